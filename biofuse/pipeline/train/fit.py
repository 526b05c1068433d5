"""`biofuse fit`: train a fusion model on cached embeddings; write an auditable run directory.

BioLangFusion's settings by default: Adam, ReduceLROnPlateau (patience 5), early stopping on the
validation metric (patience 20), at most 500 epochs, batches of 32 drawn from length buckets
(optionally capped by a padded-position budget, ``batch_tokens``, for long sequences). MSE for
regression (targets standardised on the training split; ``log1p`` optional), cross-entropy for
classification. A fusion method may declare one option chosen on validation (MIL: the entropy
weight, from ``entropy_weights``); the test split is evaluated once, with the selected model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import polars as pl
import torch

from biofuse.files import disk_errors
from biofuse.fusion import FUSIONS
from biofuse.fusion.model import FusionModel, ModelConfig
from biofuse.heads import HEADS
from biofuse.locks import exclusive
from biofuse.pipeline.data import Dataset
from biofuse.pipeline.data.splits import split_rows
from biofuse.pipeline.encoders import autocast
from biofuse.pipeline.extract import extract_command
from biofuse.pipeline.train.inputs import ModelInputs, load_inputs, model_outputs
from biofuse.pipeline.train.metrics import split_metrics
from biofuse.pipeline.train.options import FitOptions
from biofuse.pipeline.train.rundir import FitResult, RunDir
from biofuse.pipeline.train.targets import Targets, make_targets
from biofuse.pipeline.train.trainer import (
    Callback,
    CsvLog,
    EarlyStopping,
    PlateauLR,
    ProgressLine,
    Trainer,
    TrainResult,
    choose_on_validation,
)


def length_batches(rows: np.ndarray, lengths: np.ndarray, size: int,
                   rng: np.random.Generator | None, max_tokens: int | None = None
                   ) -> list[np.ndarray]:
    """Batches of rows of similar length (little padding), at most ``size`` rows and, with
    ``max_tokens``, at most that many padded positions (a row longer than the budget goes
    alone); shuffled order when ``rng``."""
    order = rows[np.argsort(lengths[rows], kind="stable")]
    budget = math.inf if max_tokens is None else max_tokens
    batches, current = [], []
    for r in order:  # ascending: the newest row is the longest, padded = rows x its length
        if current and (len(current) == size or (len(current) + 1) * int(lengths[r]) > budget):
            batches.append(np.array(current, dtype=rows.dtype))
            current = []
        current.append(r)
    if current:
        batches.append(np.array(current, dtype=rows.dtype))
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class _Training:
    """The data side of one fit: inputs, targets, splits; makes batches, steps and scores."""

    def __init__(self, inputs: ModelInputs, targets: Targets, y_raw: np.ndarray,
                 splits: dict[str, np.ndarray], options: FitOptions, aligned: bool):
        self.inputs, self.targets, self.y_raw, self.splits = inputs, targets, y_raw, splits
        self.options = options
        self.y = targets.encode(y_raw)
        self.lengths = inputs.lengths(aligned)

    def batches(self, rows: np.ndarray, rng: np.random.Generator | None) -> list[np.ndarray]:
        o = self.options
        return length_batches(rows, self.lengths, o.batch_size, rng, o.batch_tokens)

    def step(self, model: FusionModel, rows: np.ndarray) -> tuple[torch.Tensor, int]:
        with autocast(self.options.dtype):
            pred, fused = model(*self.inputs.batch(rows))
        loss = self.targets.loss(pred.float(), self.y[torch.from_numpy(rows)])
        if fused.aux_loss is not None:
            loss = loss + fused.aux_loss.float()
        return loss, len(rows)

    def outputs(self, model: FusionModel, rows: np.ndarray):
        return model_outputs(model, self.inputs, rows, self.batches(rows, None),
                            dtype=self.options.dtype)

    def score(self, model: FusionModel, rows: np.ndarray) -> float:
        raw, _ = self.outputs(model, rows)
        value = split_metrics(self.targets, self.y_raw[rows], raw).get(self.targets.metric)
        return -math.inf if value is None or not math.isfinite(value) else value


def fit(ds: Dataset, options: FitOptions, cache_root, out: str | Path,
        echo=lambda s: None, *, callbacks: Sequence[Callback] = (),
        score_test: bool = True) -> FitResult:
    """Train, select on validation, test once, and write the run directory ``out``.

    Ctrl-C keeps the best model so far: the run directory is written with status
    ``interrupted`` and the result says so. ``callbacks`` see every epoch of every candidate
    (a search's pruning raises from one to stop the fit);
    ``score_test=False`` leaves the test split unscored (a search's trials: only the chosen
    configuration is ever tested).
    """
    run = RunDir(out)
    run.check_writable()
    with exclusive(run.path, "training a model",
                   "Wait for it to finish, or pass another --out."), disk_errors(run.path):
        if HEADS[options.head].kind == "probe":
            from biofuse.pipeline.train.probe import fit_probe

            return fit_probe(ds, options, cache_root, run, echo, score_test=score_test)
        return _fit(ds, options, cache_root, run, echo, list(callbacks), score_test)


def _fit(ds: Dataset, o: FitOptions, cache_root, run: RunDir, echo, callbacks: list[Callback],
         score_test: bool) -> FitResult:
    start = time.perf_counter()
    if o.threads:
        torch.set_num_threads(o.threads)
    fusion_cls = FUSIONS[o.fusion]
    torch.use_deterministic_algorithms(True, warn_only=True)
    targets = make_targets(ds, log1p=o.log1p)
    splits = split_rows(ds.frame["split"].to_numpy(), echo)
    encoders = {m: o.encoder(m) for m in o.modalities}
    inputs = load_inputs(ds, encoders, cache_root, aligned=fusion_cls.aligned,
                         extract_hint=lambda m, e: extract_command(ds.spec, m, e, cache_root))
    work = _Training(inputs, targets, ds.labels(), splits, o, fusion_cls.aligned)
    echo(f"training on {torch.get_num_threads()} torch threads")
    run.prepare()
    model_cfg = ModelConfig(tuple(str(m) for m in o.modalities),
                            {str(m): inputs.tables[m].dim for m in o.modalities},
                            {str(m): inputs.tables[m].nt_per_token for m in o.modalities},
                            o.fusion, o.head, targets.n_outputs,
                            asdict(o.fusion_config()), asdict(o.head_config()))
    record = {"data": asdict(ds.spec), "dataset_hash": ds.hash, "cache": str(cache_root),
              "fit": o.to_dict(),
              "model": model_cfg.to_dict(), "encoders": inputs.fingerprints,
              "targets": asdict(targets)}
    run.write_config(record, status="running")
    search = fusion_cls.search  # (fusion option, fit option listing the candidates) or None
    values = getattr(o, search[1]) if search else (None,)
    val_rows = splits["val"] if len(splits["val"]) else splits["train"]

    def train(value) -> TrainResult:
        cfg = model_cfg if search is None else replace(
            model_cfg, fusion_options={**model_cfg.fusion_options, search[0]: value})
        torch.manual_seed(o.seed)
        rng = np.random.default_rng(o.seed)
        model = FusionModel(cfg)
        opt_cls = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
        opt = opt_cls(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        tags = {search[0]: value} if search else {}
        trainer = Trainer(
            model, opt, batches=lambda epoch: work.batches(splits["train"], rng),
            step=work.step, validate=lambda m: work.score(m, val_rows), max_epochs=o.epochs,
            tags=tags, callbacks=[EarlyStopping(o.patience), PlateauLR(opt, o.lr_patience),
                                  CsvLog(run.log_path),
                                  ProgressLine(echo, targets.metric, o.epochs), *callbacks],
            window=o.val_window)
        result = trainer.run()
        echo(f"{o.fusion}" + "".join(f" ({k} {v})" for k, v in tags.items())
             + f": best validation {targets.metric}"
             + (f" (mean of {o.val_window} epochs)" if o.val_window > 1 else "")
             + f" {_fmt(result.best_score)} at epoch "
             f"{result.best_epoch}" + (" (interrupted)" if result.interrupted else ""))
        return result

    best, choices = choose_on_validation(values, train)
    model = best.result.model
    interrupted = any(c.result.interrupted for c in choices)
    raw, weights = work.outputs(model, np.arange(ds.frame.height))  # every row, once
    metrics = {"task": targets.task,
               "val": split_metrics(targets, work.y_raw[splits["val"]], raw[splits["val"]]),
               "test": (split_metrics(targets, work.y_raw[splits["test"]], raw[splits["test"]])
                        if len(splits["test"]) and not interrupted and score_test else {}),
               "test_scored": score_test,
               "best_epoch": best.epoch,
               "selected": {search[0]: best.value} if search else {},
               "search": ([{search[0]: c.value, "val_score": _json_score(c.score),
                            "best_epoch": c.epoch} for c in choices] if search else None),
               "val_is_train": not len(splits["val"]),
               "interrupted": interrupted,
               "epochs": sum(c.result.epochs for c in choices),  # trained, over every candidate
               "seconds": round(time.perf_counter() - start, 3)}  # loading + training + scoring
    if search:
        metrics[search[0]] = best.value
    ids, split_col = ds.frame["id"].to_list(), ds.frame["split"].to_list()
    predictions = pl.DataFrame({"id": ids, "split": split_col} | targets.columns(raw, work.y_raw))
    attention = (pl.DataFrame({"id": ids, "split": split_col}
                              | {f"weight_{m}": w for m, w in weights.items()})
                 if weights else None)
    run.finish({**record, "model": model.config.to_dict()},  # with the chosen option
               "interrupted" if interrupted else "complete", model.state_dict(), metrics,
               predictions, attention)
    return FitResult(metrics, run.path, interrupted, model)


def _fmt(v: float) -> str:
    return f"{v:.4f}" if math.isfinite(v) else "undefined"


def _json_score(v: float) -> float | None:
    return v if math.isfinite(v) else None
