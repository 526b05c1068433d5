"""`biofuse fit --head ridge | logistic | gbm`: a scikit-learn probe on pooled embeddings.

The quick baseline: each modality's cached embeddings pooled into one vector per row (any
encoder, composition baselines included), concatenated, and a probe fitted on the training
rows only (its regularisation chosen by cross-validation there). Validation and test are each
scored once. The run directory has the layout of every fit (config.json, metrics.json,
predictions.parquet, model.pt holding the probe's arrays as tensors), so `predict`, `report`
and `biofuse run` read it like any other.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import polars as pl
import torch

from biofuse.errors import DataError
from biofuse.fusion.model import ModelConfig
from biofuse.heads import HEADS
from biofuse.pipeline.data import Dataset
from biofuse.pipeline.data.splits import split_rows
from biofuse.pipeline.extract import extract_command
from biofuse.pipeline.train.inputs import load_inputs
from biofuse.pipeline.train.metrics import split_metrics
from biofuse.pipeline.train.options import FitOptions
from biofuse.pipeline.train.rundir import FitResult, RunDir
from biofuse.pipeline.train.targets import make_targets


def fit_probe(ds: Dataset, o: FitOptions, cache_root, run: RunDir, echo, *,
              score_test: bool = True):
    """Pool, fit on the training rows, score validation and test once, write the run."""
    start = time.perf_counter()
    head_cls = HEADS[o.head]
    targets = make_targets(ds, log1p=o.log1p)
    if targets.task not in head_cls.tasks:
        fits = [n for n, c in HEADS.items() if c.kind == "probe" and targets.task in c.tasks]
        raise DataError(f"--head {o.head} fits {' and '.join(head_cls.tasks)}; the labels of "
                        f"{ds.spec.path} make this {targets.task}.",
                        f"Use --head {' or '.join(fits)}.")
    splits = split_rows(ds.frame["split"].to_numpy(), echo)
    options = o.head_config()
    inputs = load_inputs(ds, {m: o.encoder(m) for m in o.modalities}, cache_root,
                         aligned=False,
                         extract_hint=lambda m, e: extract_command(ds.spec, m, e, cache_root))
    X = inputs.pooled(options.pool)
    y_raw = ds.labels()
    y = targets.encode(y_raw).numpy()
    run.prepare()
    model_cfg = ModelConfig(tuple(str(m) for m in o.modalities),
                            {str(m): inputs.tables[m].dim for m in o.modalities},
                            {str(m): inputs.tables[m].nt_per_token for m in o.modalities},
                            o.fusion, o.head, targets.n_outputs, {}, asdict(options))
    record = {"data": asdict(ds.spec), "dataset_hash": ds.hash, "cache": str(cache_root),
              "fit": o.to_dict(), "model": model_cfg.to_dict(), "encoders": inputs.fingerprints,
              "targets": asdict(targets)}
    run.write_config(record, status="running")
    train = splits["train"]
    echo(f"{o.head}: fitting on {len(train)} training rows x {X.shape[1]} pooled features")
    probe = head_cls(targets.n_outputs, options).fit(X[train], y[train], targets.task, o.seed)
    raw = probe.raw(X)  # every row, once
    metrics = {"task": targets.task,
               "val": split_metrics(targets, y_raw[splits["val"]], raw[splits["val"]]),
               "test": (split_metrics(targets, y_raw[splits["test"]], raw[splits["test"]])
                        if len(splits["test"]) and score_test else {}),
               "test_scored": score_test,
               "best_epoch": None, "selected": {}, "search": None,
               "val_is_train": not len(splits["val"]), "interrupted": False, "epochs": None,
               "features": int(X.shape[1]),
               "seconds": round(time.perf_counter() - start, 3)}
    if hasattr(probe, "alpha"):  # chosen by cross-validation on the training rows
        metrics["regularisation"] = [float(a) for a in np.atleast_1d(probe.alpha)]
    ids, split_col = ds.frame["id"].to_list(), ds.frame["split"].to_list()
    predictions = pl.DataFrame({"id": ids, "split": split_col} | targets.columns(raw, y_raw))
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in probe.state().items()}
    run.finish(record, "complete", state, metrics, predictions)
    return FitResult(metrics, run.path, False, probe)
