"""Scoring new sequences with a `fit` run: the new table read the way the run's table was, its
embeddings looked up in the cache, the saved model applied. (A `finetune` run runs its own
encoder: biofuse.pipeline.finetune.predict; ``biofuse.predict`` picks by the run's kind.)"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import polars as pl

from biofuse.errors import ConfigError
from biofuse.modality import Modality
from biofuse.pipeline.data import DataSpec, load_dataset
from biofuse.pipeline.extract import extract_command
from biofuse.pipeline.train.inputs import load_inputs, model_outputs
from biofuse.pipeline.train.rundir import RunDir, run_cache

#: file suffixes predictions can be written as
FORMATS = (".parquet", ".csv")


def prediction_spec(run_config: dict, data: str | Path) -> DataSpec:
    """The new table read the way the run's table was (same column mapping and ORF policy);
    labels optional, no splits, every row kept."""
    known = {f.name for f in fields(DataSpec)}
    spec = DataSpec(**{k: (tuple(v) if isinstance(v, list) else v)
                       for k, v in run_config["data"].items() if k in known})
    return replace(spec, path=str(data), label_cols=(), labels=False, split_col=None,
                   group_col=None, dedup="none")


def check_output(out: str | Path | None) -> Path | None:
    """The predictions file, refused before any work if it is not .parquet or .csv."""
    out = Path(out) if out is not None else None
    if out is not None and out.suffix.lower() not in FORMATS:
        raise ConfigError(f"--out {out} has the suffix {out.suffix or '(none)'}; predictions are "
                          "written as Parquet or CSV.", "Name the file .parquet or .csv.")
    return out


def predict(run_dir: str | Path, data: str | Path, cache_root=None,
            out: str | Path | None = None) -> pl.DataFrame:
    """Predictions of a `fit` run's model for every row of ``data``: ``id`` and
    ``pred_<target>`` (or ``pred`` and ``prob_<class>``). Written to ``out`` (.parquet or .csv)
    when given. ``cache_root``: where the rows' embeddings are (default: see
    :func:`run_cache`)."""
    out = check_output(out)
    saved = RunDir(run_dir).load()
    cache_root = run_cache(saved.config, cache_root)
    ds = load_dataset(prediction_spec(saved.config, data))
    encoders = {Modality.parse(m): info["store"] for m, info in saved.config["encoders"].items()}
    probe = getattr(saved.model, "kind", "network") == "probe"
    aligned = not probe and saved.model.fusion.aligned
    inputs = load_inputs(ds, encoders, cache_root, aligned=aligned,
                         extract_hint=lambda m, e: extract_command(ds.spec, m, e, cache_root))
    for m, table in inputs.tables.items():
        trained = saved.model_config.nt_per_token[str(m)]
        if table.nt_per_token != trained:
            raise ConfigError(f"The model in {run_dir} was trained on {m} tokens of {trained} "
                              f"nucleotides, but its cache store holds {table.nt_per_token} "
                              "(the run is from an older biofuse).",
                              "Train the model again with `biofuse fit`.")
    if probe:
        raw = saved.model.raw(inputs.pooled(saved.model.options.pool))
    else:
        raw, _ = model_outputs(saved.model, inputs, np.arange(ds.frame.height),
                               batch_size=saved.config["fit"]["batch_size"],
                               dtype=saved.config["fit"]["dtype"])
    frame = pl.DataFrame({"id": ds.frame["id"].to_list()} | saved.targets.columns(raw, None))
    return write_predictions(frame, out)


def write_predictions(frame: pl.DataFrame, out: Path | None) -> pl.DataFrame:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".csv":
            frame.write_csv(out)
        else:
            frame.write_parquet(out)
    return frame
