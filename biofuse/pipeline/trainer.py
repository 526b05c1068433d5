"""A training loop that knows nothing about the model (in the manner of minGPT's trainer).

The caller supplies the model, an optimizer, a function giving one epoch's batches, a step
function (model, batch) -> loss, and a validation function (model) -> (score, metrics); the
trainer runs epochs and hands each epoch's log to its callbacks, which decide about early stopping
and the learning rate, keep the best weights, write the log and report progress. ``fit`` uses it
today; ``finetune`` will use the same loop with an encoder inside the model.

Ctrl-C during training stops the loop after restoring the best weights so far; the result says
``interrupted`` and the caller decides what to write.
"""

from __future__ import annotations

import copy
import csv
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_score: float  # the selection metric; -inf when it could not be computed
    lr: float
    seconds: float
    tokens: int = 0
    tags: dict[str, Any] = field(default_factory=dict)  # e.g. the entropy weight being trained

    def row(self) -> dict[str, Any]:
        return {**self.tags, "epoch": self.epoch, "train_loss": self.train_loss,
                "val_score": self.val_score, "lr": self.lr, "seconds": self.seconds,
                "tokens": self.tokens}


class Callback:
    """Hooks called by :class:`Trainer`; set ``trainer.stop = True`` to end training."""

    def on_epoch_end(self, trainer: Trainer, log: EpochLog) -> None:
        pass

    def on_train_end(self, trainer: Trainer) -> None:
        pass


@dataclass
class TrainResult:
    model: torch.nn.Module
    best_score: float
    best_epoch: int
    epochs: int
    interrupted: bool = False


class Trainer:
    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
                 batches: Callable[[int], Iterable[Any]],
                 step: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, int]],
                 validate: Callable[[torch.nn.Module], float], max_epochs: int,
                 callbacks: list[Callback] = (), tags: dict[str, Any] | None = None):
        """``batches(epoch)`` yields the epoch's batches; ``step(model, batch)`` returns the loss
        and the number of examples in the batch; ``validate(model)`` the selection score
        (higher is better; NaN or -inf when undefined)."""
        self.model, self.optimizer = model, optimizer
        self.batches, self.step, self.validate = batches, step, validate
        self.max_epochs = max_epochs
        self.callbacks = list(callbacks)
        self.tags = dict(tags or {})
        self.stop = False
        self.best = BestWeights()
        self.callbacks.insert(0, self.best)

    def run(self) -> TrainResult:
        interrupted, epoch = False, 0
        try:
            for epoch in range(1, self.max_epochs + 1):
                self.model.train()
                start = time.perf_counter()
                total, n = 0.0, 0
                for batch in self.batches(epoch):
                    loss, size = self.step(self.model, batch)
                    self.optimizer.zero_grad()
                    loss.backward()
                    self.optimizer.step()
                    total += loss.detach().item() * size
                    n += size
                self.model.eval()
                with torch.no_grad():
                    score = self.validate(self.model)
                log = EpochLog(epoch, total / max(n, 1), _finite_or_ninf(score),
                               self.optimizer.param_groups[0]["lr"], time.perf_counter() - start,
                               tags=self.tags)
                for cb in self.callbacks:
                    cb.on_epoch_end(self, log)
                if self.stop:
                    break
        except KeyboardInterrupt:
            interrupted = True
        self.best.restore(self.model)
        for cb in self.callbacks:
            cb.on_train_end(self)
        return TrainResult(self.model, self.best.score, self.best.epoch, epoch, interrupted)


def _finite_or_ninf(score: float) -> float:
    return score if score is not None and math.isfinite(score) else -math.inf


class BestWeights(Callback):
    """Keeps a copy of the weights of the best-scoring epoch (the first one if none scores)."""

    def __init__(self):
        self.score, self.epoch, self.state = -math.inf, 0, None

    def on_epoch_end(self, trainer, log):
        if self.state is None or log.val_score > self.score:
            self.score, self.epoch = log.val_score, log.epoch
            self.state = copy.deepcopy(trainer.model.state_dict())

    def restore(self, model: torch.nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


class EarlyStopping(Callback):
    """Stops after ``patience`` epochs without a better validation score."""

    def __init__(self, patience: int):
        self.patience, self.best, self.stale = patience, -math.inf, 0

    def on_epoch_end(self, trainer, log):
        if log.val_score > self.best:
            self.best, self.stale = log.val_score, 0
            return
        self.stale += 1
        if self.stale >= self.patience:
            trainer.stop = True


class PlateauLR(Callback):
    """ReduceLROnPlateau on the validation score (an undefined score counts as no progress)."""

    def __init__(self, optimizer: torch.optim.Optimizer, patience: int):
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max",
                                                                    patience=patience)

    def on_epoch_end(self, trainer, log):
        self.scheduler.step(log.val_score if math.isfinite(log.val_score) else -1e9)


class CsvLog(Callback):
    """Appends one row per epoch to a CSV file as training runs (header written once)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_epoch_end(self, trainer, log):
        row = log.row()
        new = not self.path.exists()
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


class ProgressLine(Callback):
    """One line per epoch, or every ``every`` seconds when epochs are fast: epoch, train loss,
    validation score, best so far, seconds per epoch, and the tags (what is being trained)."""

    def __init__(self, echo: Callable[[str], None], metric: str, max_epochs: int,
                 every: float = 5.0):
        self.echo, self.metric, self.max_epochs, self.every = echo, metric, max_epochs, every
        self.last = -math.inf

    def on_epoch_end(self, trainer, log):
        now = time.perf_counter()
        if now - self.last < self.every and not trainer.stop and log.epoch > 1:
            return
        self.last = now
        tags = "".join(f"{k} {v}, " for k, v in log.tags.items())
        best = trainer.best
        self.echo(f"{tags}epoch {log.epoch}/{self.max_epochs}: train loss {log.train_loss:.4f}, "
                  f"val {self.metric} {_fmt(log.val_score)}, best {_fmt(best.score)} "
                  f"(epoch {best.epoch}), {log.seconds:.2f} s/epoch")


def _fmt(v: float) -> str:
    return f"{v:.4f}" if math.isfinite(v) else "undefined"


@dataclass
class Choice:
    """One candidate of a hyper-parameter chosen on validation, and how it did."""

    value: Any
    score: float
    epoch: int
    result: TrainResult | None = None


def choose_on_validation(values: Iterable[Any], train: Callable[[Any], TrainResult]
                         ) -> tuple[Choice, list[Choice]]:
    """Train once per candidate value; the best validation score wins (ties: the first).
    Stops early, keeping what was trained, if a run was interrupted."""
    choices: list[Choice] = []
    for value in values:
        result = train(value)
        choices.append(Choice(value, result.best_score, result.best_epoch, result))
        if result.interrupted:
            break
    best = max(choices, key=lambda c: c.score)  # max keeps the first of equal scores
    return best, choices
