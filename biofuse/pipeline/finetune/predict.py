"""Scoring new sequences with a `finetune` run: its own encoder and head run on the table (no
cache), read the way the run's table was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from biofuse.heads import HEADS
from biofuse.modality import Modality
from biofuse.options import from_dict
from biofuse.pipeline.data import Dataset, load_dataset
from biofuse.pipeline.finetune.model import EncoderHead, Tokens, token_outputs
from biofuse.pipeline.finetune.options import FinetuneOptions
from biofuse.pipeline.finetune.training import load_encoder
from biofuse.pipeline.train.predict import check_output, prediction_spec, write_predictions
from biofuse.pipeline.train.rundir import RunDir
from biofuse.pipeline.train.targets import Targets


def predict(run_dir: str | Path, data: str | Path, out: str | Path | None = None,
            device: str | None = None) -> pl.DataFrame:
    """Predictions of a `finetune` run for every row of ``data`` (as `fit` runs give them),
    written to ``out`` (.parquet or .csv) when given."""
    out = check_output(out)
    run = RunDir(run_dir)
    config = run.read_config()
    ds = load_dataset(prediction_spec(config, data))
    raw = outputs(run, config, ds, device)
    frame = pl.DataFrame({"id": ds.frame["id"].to_list()}
                         | Targets(**config["targets"]).columns(raw, None))
    return write_predictions(frame, out)


def outputs(run: RunDir, config: dict, ds: Dataset, device: str | None = None) -> np.ndarray:
    """Raw outputs of a finetune run's encoder and head for every row of ``ds``."""
    o = from_dict(FinetuneOptions, {**config["finetune"], "model": str(run.encoder_dir),
                                    "device": device})
    r = o.resolved()
    encoder = load_encoder(o, r["device"])
    spec = config["head"]
    head_cls = HEADS[spec["name"]]
    head = head_cls(spec["in_dim"], spec["n_outputs"],
                    from_dict(head_cls.Options, spec["options"], head_cls.Options.prefix))
    head.load_state_dict(run.load_weights())
    model = EncoderHead(encoder, encoder.model.float().to(r["device"]), head.to(r["device"]))
    tokens = Tokens.of(encoder, ds.frame[Modality.parse(o.modality).column].to_list(),
                       o.long_policy, o.window_overlap, str(ds.spec.path))
    return token_outputs(model, tokens, np.arange(ds.frame.height), r["batch_tokens"],
                         config["resolved"]["dtype"])
