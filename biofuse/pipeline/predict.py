"""`biofuse predict`: score new sequences with a trained run, from the same encoders' cache."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import polars as pl
import torch

from biofuse.errors import ConfigError
from biofuse.fusion.model import FusionModel, ModelConfig
from biofuse.pipeline.data import DataSpec, load_dataset
from biofuse.pipeline.fit import FitConfig, Targets, load_tensors, predict_rows, prediction_columns


def load_run(run_dir: Path) -> dict:
    path = Path(run_dir) / "config.json"
    if not path.is_file() or not (Path(run_dir) / "model.pt").is_file():
        raise ConfigError(f"{run_dir} is not a biofuse run directory (no config.json/model.pt).",
                          "Pass the --out directory of a finished `biofuse fit`.")
    return json.loads(path.read_text())


def predict(run_dir: Path, data: str, cache_root, out: Path, spec_overrides: dict | None = None
            ) -> int:
    run = load_run(run_dir)
    known = {f.name for f in fields(DataSpec)}
    spec = DataSpec(**{k: (tuple(v) if isinstance(v, list) else v)
                       for k, v in run["data"].items() if k in known})
    # the new table: same column mapping, labels optional, every row predicted
    spec = replace(spec, path=str(data), label_cols=(), labels=False, split_col=None,
                   group_col=None, dedup="none", **(spec_overrides or {}))
    ds = load_dataset(spec)
    fit_cfg = run["fit"]
    model_cfg = ModelConfig.from_dict(run["model"])
    encoders = {m: info["store"] for m, info in run["encoders"].items()}
    cfg = FitConfig(fusion=fit_cfg["fusion"], modalities=tuple(fit_cfg["modalities"]),
                    encoders=encoders, head=fit_cfg["head"])
    model = FusionModel(model_cfg)
    model.load_state_dict(torch.load(Path(run_dir) / "model.pt", weights_only=True))
    t = load_tensors(ds, cfg, cache_root, model.fusion.aligned)
    targets = Targets(**run["targets"])
    raw, _ = predict_rows(model, t, np.arange(ds.frame.height), fit_cfg["batch_size"])
    table = {"id": ds.frame["id"].to_list()} | prediction_columns(raw, targets, None)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(table)
    if out.suffix == ".csv":
        frame.write_csv(out)
    else:
        frame.write_parquet(out)
    return frame.height
