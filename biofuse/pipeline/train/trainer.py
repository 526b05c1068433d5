"""A training loop that knows nothing about the model (in the manner of minGPT's trainer).

The caller supplies the model, an optimizer, a function giving one epoch's batches, a step
function (model, batch) -> loss, and a validation function (model) -> score; the trainer runs
epochs and hands each epoch's log to its callbacks, which decide about early stopping and the
learning rate, keep the best weights, write the log, save checkpoints and report progress. ``fit``
trains a fusion model with it, ``finetune`` an encoder and its head.

An item of ``batches(epoch)`` is one optimisation step: a batch, or a list of micro-batches whose
gradients are accumulated (each micro-batch's mean loss weighted by its share of the step's
examples, so the step sees the mean loss over all of them).

Ctrl-C during training stops the loop after restoring the best weights so far; the result says
``interrupted`` and the caller decides what to write. ``state()`` / ``load_state()`` capture
everything needed to continue a run at the next epoch (trainable weights, optimizer, callbacks,
random state), which ``finetune`` saves after every epoch.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from biofuse.files import write_atomic


@dataclass
class EpochLog:
    epoch: int
    train_loss: float
    val_score: float  # the selection metric; -inf when it could not be computed
    lr: float
    seconds: float
    tokens: int = 0
    tags: dict[str, Any] = field(default_factory=dict)  # e.g. the entropy weight being trained
    selection: float | None = None  # what selection sees: the mean of the last `window` scores

    def __post_init__(self) -> None:
        if self.selection is None:
            self.selection = self.val_score

    def row(self) -> dict[str, Any]:
        return {**self.tags, "epoch": self.epoch, "train_loss": self.train_loss,
                "val_score": self.val_score, "val_selection": self.selection, "lr": self.lr,
                "seconds": self.seconds, "tokens": self.tokens}


class Callback:
    """Hooks called by :class:`Trainer`; set ``trainer.stop = True`` to end training."""

    def on_epoch_end(self, trainer: Trainer, log: EpochLog) -> None:
        pass

    def on_step_end(self, trainer: Trainer, step: StepLog) -> None:
        pass

    def on_train_end(self, trainer: Trainer) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        """What this callback must remember across a resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@dataclass
class StepLog:
    """One optimisation step, as it finishes."""

    epoch: int
    step: int  # within the epoch, from 1
    steps: int  # steps in the epoch
    examples: int  # examples trained so far this epoch
    tokens: int  # tokens trained so far this epoch
    loss: float  # mean training loss so far this epoch
    seconds: float  # since the epoch started


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
                 step: Callable[[torch.nn.Module, Any], tuple],
                 validate: Callable[[torch.nn.Module], float], max_epochs: int,
                 callbacks: list[Callback] = (), tags: dict[str, Any] | None = None,
                 window: int = 1):
        """``batches(epoch)`` yields the epoch's optimisation steps (a batch, or a list of
        micro-batches to accumulate); ``step(model, batch)`` returns the mean loss and the
        number of examples in the batch (and optionally its number of tokens);
        ``validate(model)`` the validation score (higher is better; NaN or -inf when
        undefined). Selection (best weights, early stopping, the learning-rate schedule) sees
        the mean score of the last ``window`` epochs (fewer at the start): with a window above
        1, one lucky epoch on a noisy validation curve is not chosen over a stretch of good
        ones; the weights kept are those at the end of the best stretch."""
        self.model, self.optimizer = model, optimizer
        self.batches, self.step, self.validate = batches, step, validate
        self.max_epochs = max_epochs
        self.callbacks = list(callbacks)
        self.tags = dict(tags or {})
        self.window = window
        self.scores: list[float] = []  # the last `window` validation scores
        self.stop = False
        self.epoch = 0  # the last finished epoch
        self.best = BestWeights()
        self.callbacks.insert(0, self.best)

    def run(self) -> TrainResult:
        interrupted = False
        try:
            for epoch in range(self.epoch + 1, self.max_epochs + 1):
                log = self._epoch(epoch)
                self.epoch = epoch
                for cb in self.callbacks:
                    cb.on_epoch_end(self, log)
                if self.stop:
                    break
        except KeyboardInterrupt:
            interrupted = True
        self.best.restore(self.model)
        for cb in self.callbacks:
            cb.on_train_end(self)
        return TrainResult(self.model, self.best.score, self.best.epoch, self.epoch, interrupted)

    def _epoch(self, epoch: int) -> EpochLog:
        self.model.train()
        start = time.perf_counter()
        total, n, tokens = 0.0, 0, 0
        steps = list(self.batches(epoch))
        for k, item in enumerate(steps, 1):
            micro = item if isinstance(item, list) else [item]
            self.optimizer.zero_grad()
            outs = []
            examples = sum(len(b) for b in micro)  # a micro-batch is a sized batch of examples
            for batch in micro:
                out = self.step(self.model, batch)
                outs.append(out)
                # backward per micro-batch, so its activations are freed before the next
                (out[0] if len(micro) == 1 else out[0] * (out[1] / examples)).backward()
            self.optimizer.step()
            for loss, size, *rest in outs:
                total += loss.detach().item() * size
                n += size
                tokens += rest[0] if rest else 0
            if any(type(cb).on_step_end is not Callback.on_step_end for cb in self.callbacks):
                info = StepLog(epoch, k, len(steps), n, tokens, total / max(n, 1),
                               time.perf_counter() - start)
                for cb in self.callbacks:
                    cb.on_step_end(self, info)
        self.model.eval()
        with torch.no_grad():
            score = _finite_or_ninf(self.validate(self.model))
        self.scores = [*self.scores, score][-self.window:]
        return EpochLog(epoch, total / max(n, 1), score,
                        self.optimizer.param_groups[0]["lr"], time.perf_counter() - start,
                        tokens=tokens, tags=self.tags,
                        selection=sum(self.scores) / len(self.scores))

    def state(self) -> dict[str, Any]:
        """Everything needed to continue after the current epoch (see ``load_state``)."""
        return {"epoch": self.epoch, "model": trainable_state(self.model),
                "optimizer": self.optimizer.state_dict(),
                "callbacks": [cb.state_dict() for cb in self.callbacks],
                "scores": list(self.scores), "torch_rng": torch.get_rng_state()}

    def state_problem(self, state: Any) -> str | None:
        """Why ``state`` (read back from a checkpoint file) cannot be continued by this trainer,
        or None: it must have the shape ``state()`` gives, an epoch this run can reach, and
        tensors that fit this model and optimizer."""
        if not isinstance(state, dict):
            return f"it holds a {type(state).__name__}, not a training state"
        epoch = state.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not \
                1 <= epoch <= self.max_epochs:
            return f"its epoch {epoch!r} is not one of 1..{self.max_epochs}"
        mine = trainable_state(self.model)
        model = state.get("model")
        if not isinstance(model, dict) or set(model) != set(mine) or any(
                not isinstance(v, torch.Tensor) or v.shape != mine[k].shape
                for k, v in model.items()):
            return "its weights do not fit this model"
        optimizer = state.get("optimizer")
        groups = optimizer.get("param_groups") if isinstance(optimizer, dict) else None
        if not isinstance(groups, list) or len(groups) != len(self.optimizer.param_groups):
            return "its optimizer state does not fit this optimizer"
        callbacks = state.get("callbacks")
        if not isinstance(callbacks, list) or len(callbacks) != len(self.callbacks) or \
                not all(isinstance(c, dict) for c in callbacks):
            return "its callbacks' state does not fit this trainer"
        if not isinstance(state.get("torch_rng"), torch.Tensor):
            return "it holds no random state"
        return None

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from ``state()`` of a trainer built the same way: the next ``run`` starts at
        the epoch after the saved one."""
        self.model.load_state_dict(state["model"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        for cb, cb_state in zip(self.callbacks, state["callbacks"], strict=True):
            cb.load_state_dict(cb_state)
        torch.set_rng_state(state["torch_rng"])
        self.scores = list(state.get("scores", []))
        self.epoch = int(state["epoch"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the parameters that train (and every buffer): what changes while training.
    For a LoRA model only the adapters and the head, not the frozen base weights."""
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k not in frozen}


def _finite_or_ninf(score: float) -> float:
    return score if score is not None and math.isfinite(score) else -math.inf


class BestWeights(Callback):
    """Keeps a copy of the trainable weights of the best-scoring epoch (the first one if none
    scores), by the trainer's selection score."""

    def __init__(self):
        self.score, self.epoch, self.state = -math.inf, 0, None

    def on_epoch_end(self, trainer, log):
        if self.state is None or log.selection > self.score:
            self.score, self.epoch = log.selection, log.epoch
            self.state = trainable_state(trainer.model)

    def restore(self, model: torch.nn.Module) -> None:
        if self.state is not None:
            model.load_state_dict(self.state, strict=False)

    def state_dict(self):
        return {"score": self.score, "epoch": self.epoch, "state": self.state}

    def load_state_dict(self, state):
        self.score, self.epoch, self.state = state["score"], state["epoch"], state["state"]


class EarlyStopping(Callback):
    """Stops after ``patience`` epochs without a better selection score."""

    def __init__(self, patience: int):
        self.patience, self.best, self.stale = patience, -math.inf, 0

    def on_epoch_end(self, trainer, log):
        if log.selection > self.best:
            self.best, self.stale = log.selection, 0
            return
        self.stale += 1
        if self.stale >= self.patience:
            trainer.stop = True

    def state_dict(self):
        return {"best": self.best, "stale": self.stale}

    def load_state_dict(self, state):
        self.best, self.stale = state["best"], state["stale"]


class PlateauLR(Callback):
    """ReduceLROnPlateau on the selection score (an undefined score counts as no progress)."""

    def __init__(self, optimizer: torch.optim.Optimizer, patience: int):
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max",
                                                                    patience=patience)

    def on_epoch_end(self, trainer, log):
        self.scheduler.step(log.selection if math.isfinite(log.selection) else -1e9)

    def state_dict(self):
        return self.scheduler.state_dict()

    def load_state_dict(self, state):
        self.scheduler.load_state_dict(state)


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
        window = (f" (mean of the last {trainer.window}: {_fmt(log.selection)})"
                  if trainer.window > 1 else "")
        self.echo(f"{tags}epoch {log.epoch}/{self.max_epochs}: train loss {log.train_loss:.4f}, "
                  f"val {self.metric} {_fmt(log.val_score)}{window}, best {_fmt(best.score)} "
                  f"(epoch {best.epoch}), {log.seconds:.2f} s/epoch")


class StepProgress(Callback):
    """Within an epoch, a line every ``every`` seconds: steps, rows, tokens/s, loss, time left."""

    def __init__(self, echo, every: float = 10.0):
        self.echo, self.every, self.last = echo, every, time.perf_counter()

    def on_step_end(self, trainer, step):
        now = time.perf_counter()
        if now - self.last < self.every or step.step == step.steps:
            return
        self.last = now
        left = step.seconds / step.step * (step.steps - step.step)
        self.echo(f"epoch {step.epoch}: step {step.step}/{step.steps}, {step.examples} rows, "
                  f"{step.tokens / max(step.seconds, 1e-9):,.0f} tokens/s, train loss "
                  f"{step.loss:.4f}, {_duration(left)} left in the epoch")


class Checkpoint(Callback):
    """After every epoch: the trainer's state, so the same command continues after a crash or
    Ctrl-C. Written to a temporary file and renamed, so a kill never leaves half of one."""

    def __init__(self, path: Path, key: str):
        self.path, self.key = path, key

    def on_epoch_end(self, trainer, log):
        state = {"key": self.key, **trainer.state()}
        write_atomic(self.path, lambda f: torch.save(state, f))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


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
