"""Evaluation metrics, per target and averaged: Spearman, Pearson, R², MSE for regression;
accuracy and macro-F1 for classification. NaN targets are skipped."""

from __future__ import annotations

import numpy as np


def _rank(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (as scipy.stats.rankdata)."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def regression_metrics(y: np.ndarray, pred: np.ndarray, names: list[str]) -> dict:
    """y, pred: [N, targets]."""
    out: dict = {"per_target": {}}
    for j, name in enumerate(names):
        ok = ~np.isnan(y[:, j])
        t, p = y[ok, j], pred[ok, j]
        if len(t) < 2:
            out["per_target"][name] = {"n": int(len(t))}
            continue
        mse = float(((t - p) ** 2).mean())
        var = float(((t - t.mean()) ** 2).mean())
        out["per_target"][name] = {"n": int(len(t)), "spearman": _pearson(_rank(t), _rank(p)),
                                   "pearson": _pearson(t, p), "mse": mse,
                                   "r2": 1 - mse / var if var > 0 else float("nan")}
    for k in ("spearman", "pearson", "r2", "mse"):
        vals = [m[k] for m in out["per_target"].values() if k in m and not np.isnan(m[k])]
        out[k] = float(np.mean(vals)) if vals else float("nan")
    return out


def classification_metrics(y: np.ndarray, pred: np.ndarray, n_classes: int) -> dict:
    """y: [N] class index (-1 = missing); pred: [N] predicted index."""
    ok = y >= 0
    y, pred = y[ok], pred[ok]
    f1s = []
    for c in range(n_classes):
        tp = float(((pred == c) & (y == c)).sum())
        fp = float(((pred == c) & (y != c)).sum())
        fn = float(((pred != c) & (y == c)).sum())
        if tp + fp + fn > 0:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return {"n": int(len(y)), "accuracy": float((y == pred).mean()) if len(y) else float("nan"),
            "macro_f1": float(np.mean(f1s)) if f1s else float("nan")}
