"""Seed ensembles: the cheapest accuracy a user gets. For a configuration trained with several
seeds, average the seeds' predictions (regression: the predicted values; classification: the
class probabilities) and score the average on the validation and test splits, beside the
seeds' mean ± std in every results table. ``average_predictions`` also serves
``biofuse predict`` on an experiment's chosen configuration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from biofuse.files import read_bytes
from biofuse.pipeline.train.metrics import classification_metrics, regression_metrics

#: the column a results table keeps each split's ensemble score in
COLUMNS = {"val": "val_ensemble", "test": "test_ensemble"}


def average_predictions(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """One prediction table from several of the same rows (by ``id``): the mean of the
    ``pred_<target>`` columns, or of the ``prob_<class>`` columns with ``pred`` their argmax;
    other columns (id, split, labels) from the first."""
    first = frames[0]
    probs = [c for c in first.columns if c.startswith("prob_")]
    preds = [c for c in first.columns if c.startswith("pred_")]
    averaged = (pl.concat([f.select(["id", *probs, *preds]) for f in frames])
                .group_by("id", maintain_order=True).agg(pl.col([*probs, *preds]).mean()))
    out = first.drop([*probs, *preds, *(["pred"] if probs else [])]).join(
        averaged, on="id", how="left", maintain_order="left")
    if probs:
        classes = [c.removeprefix("prob_") for c in probs]
        best = np.asarray(out.select(probs).to_numpy()).argmax(1)
        out = out.with_columns(pl.Series("pred", [classes[i] for i in best]))
    return out


def _score(frame: pl.DataFrame, split: str, metric: str) -> float | None:
    part = frame.filter(pl.col("split") == split) if "split" in frame.columns else frame
    if part.is_empty():
        return None
    if metric == "accuracy":
        if "y" not in part.columns:
            return None
        classes = sorted(set(part["y"].drop_nulls().to_list()) | set(part["pred"].to_list()))
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index.get(v, -1) if v is not None else -1 for v in part["y"].to_list()])
        pred = np.array([index[v] for v in part["pred"].to_list()])
        value = classification_metrics(y, pred, len(classes))["accuracy"]
    else:
        names = [c.removeprefix("pred_") for c in part.columns if c.startswith("pred_")]
        if not names or any(f"y_{n}" not in part.columns for n in names):
            return None
        y = part.select([f"y_{n}" for n in names]).to_numpy().astype(np.float64)
        pred = part.select([f"pred_{n}" for n in names]).to_numpy().astype(np.float64)
        value = regression_metrics(y, pred, names).get(metric)
    return None if value is None or not np.isfinite(value) else float(value)


def seed_ensembles(runs: pl.DataFrame) -> pl.DataFrame:
    """Per (dataset, configuration) with two or more finished seeds, the ensemble's validation
    and test score; a run whose predictions cannot be read leaves its configuration out."""
    rows = []
    done = runs.filter((pl.col("status") == "complete") & pl.col("metric").is_not_null())
    for (dataset, config_id), group in done.group_by(["dataset", "config_id"],
                                                     maintain_order=True):
        if group.height < 2:
            continue
        try:
            frames = [pl.read_parquet(read_bytes(Path(d) / "predictions.parquet", "predictions"))
                      for d in group["run_dir"].to_list()]
            average = average_predictions(frames)
        except Exception:  # noqa: BLE001 — a damaged run: no ensemble for its configuration
            continue
        metric = group["metric"][0]
        rows.append({"dataset": dataset, "config_id": config_id,
                     **{col: _score(average, split, metric) for split, col in COLUMNS.items()}})
    schema = {"dataset": pl.String, "config_id": pl.String, "val_ensemble": pl.Float64,
              "test_ensemble": pl.Float64}
    return pl.DataFrame(rows, schema=schema)
