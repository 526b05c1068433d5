"""What a model predicts and how: the task, target names, classes, and the standardisation of
regression targets (fitted on the training split only). Saved in every run directory, so a
prediction can be turned back into the label's units."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from biofuse.errors import DataError
from biofuse.pipeline.data import Dataset


@dataclass
class Targets:
    task: str  # regression | classification
    names: list[str]
    classes: list[str] | None
    mean: list[float] | None = None
    std: list[float] | None = None
    log1p: bool = False

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else len(self.names)

    @property
    def metric(self) -> str:
        """The validation metric models are selected on."""
        return "macro_f1" if self.task == "classification" else "spearman"

    def encode(self, y: np.ndarray) -> torch.Tensor:
        """Raw labels [N, targets] -> training targets: class indices [N] or standardised floats."""
        if self.task == "classification":
            return torch.from_numpy(y[:, 0].astype(np.int64))
        y = np.log1p(y) if self.log1p else y
        return torch.from_numpy(((y - np.array(self.mean)) / np.array(self.std)).astype(np.float32))

    def decode(self, pred: np.ndarray) -> np.ndarray:
        y = pred * np.array(self.std) + np.array(self.mean)
        return np.expm1(y) if self.log1p else y

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (unknown class -1 ignored) or MSE over the known targets."""
        if self.task == "classification":
            return torch.nn.functional.cross_entropy(pred, y, ignore_index=-1)
        ok = ~torch.isnan(y)
        return ((pred - torch.nan_to_num(y)) ** 2)[ok].mean()

    def columns(self, raw: np.ndarray, y_raw: np.ndarray | None) -> dict:
        """Prediction table columns for model outputs ``raw`` (and the true labels, if known)."""
        cols: dict = {}
        if self.task == "classification":
            probs = torch.softmax(torch.from_numpy(raw), -1).numpy()
            if y_raw is not None:
                cols["y"] = [self.classes[int(v)] if v >= 0 else None for v in y_raw[:, 0]]
            cols["pred"] = [self.classes[i] for i in raw.argmax(1)]
            cols.update({f"prob_{c}": probs[:, i] for i, c in enumerate(self.classes)})
            return cols
        pred = self.decode(raw)
        for j, name in enumerate(self.names):
            if y_raw is not None:
                cols[f"y_{name}"] = y_raw[:, j]
            cols[f"pred_{name}"] = pred[:, j]
        return cols


def make_targets(ds: Dataset, *, log1p: bool = False) -> Targets:
    """The targets of ``ds``, standardised on its training rows."""
    if not ds.label_names:
        raise DataError(f"{ds.spec.path} has no label column, so there is nothing to fit.",
                        "Name the target with --label-col.")
    if ds.task == "classification":
        if len(ds.classes) < 2:
            raise DataError(f"Every labelled row of {ds.spec.path} has one class "
                            f"({', '.join(ds.classes) or 'none'}), so there is nothing to learn.",
                            "Check the label column, or pass --task regression for numbers.")
        return Targets("classification", list(ds.label_names), list(ds.classes))
    y = ds.labels()
    train = (ds.frame["split"] == "train").to_numpy()
    if log1p and np.nanmin(y) <= -1:
        raise DataError("--log1p needs targets above -1.", "Drop --log1p for these labels.")
    yt = np.log1p(y[train]) if log1p else y[train]
    mean, std = np.nanmean(yt, 0), np.nanstd(yt, 0)
    return Targets("regression", list(ds.label_names), None, mean.tolist(),
                   np.where(std > 0, std, 1.0).tolist(), log1p)
