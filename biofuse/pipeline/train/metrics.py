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


def split_metrics(targets, y_raw: np.ndarray, raw: np.ndarray) -> dict:
    """Metrics of one split from raw model outputs; {} for an empty split. A metric that cannot
    be computed (fewer than two labelled rows, constant labels or predictions) is None, and
    ``undefined`` says why, so metrics.json stays valid JSON and honest."""
    if len(y_raw) == 0:
        return {}
    if targets.task == "classification":
        out = classification_metrics(y_raw[:, 0].astype(int), raw.argmax(1), len(targets.classes))
    else:
        pred = targets.decode(raw)
        out = regression_metrics(y_raw, pred, targets.names)
        reason = _why_undefined(y_raw, pred)
    undefined = [k for k, v in out.items() if isinstance(v, float) and np.isnan(v)]
    for k in undefined:
        out[k] = None
    for m in out.get("per_target", {}).values():
        for k, v in list(m.items()):
            if isinstance(v, float) and np.isnan(v):
                m[k] = None
    if undefined:
        out["undefined"] = {"metrics": undefined,
                            "reason": reason if targets.task != "classification"
                            else "no labelled rows"}
    return out


def _why_undefined(y: np.ndarray, pred: np.ndarray) -> str:
    ok = ~np.isnan(y)
    if ok.sum(0).min() < 2:
        return "fewer than two labelled rows"
    if any(np.ptp(y[ok[:, j], j]) == 0 for j in range(y.shape[1])):
        return "the labels are constant"
    if any(np.ptp(pred[ok[:, j], j]) == 0 for j in range(y.shape[1])):
        return "the predictions are constant"
    return "non-finite values"


def format_metrics(metrics: dict, digits: int = 4) -> list[str]:
    """One line per evaluated split: the main metrics, 'undefined' where they could not be
    computed."""
    def f(v):
        return "undefined" if v is None else f"{v:.{digits}f}"

    lines = []
    for split in ("val", "test"):
        m = metrics.get(split) or {}
        if not m:
            continue
        if metrics["task"] == "classification":
            lines.append(f"{split:5s} accuracy {f(m['accuracy'])}  macro-F1 {f(m['macro_f1'])}")
        else:
            lines.append(f"{split:5s} Spearman {f(m['spearman'])}  Pearson {f(m['pearson'])}  "
                         f"R2 {f(m['r2'])}  MSE {f(m['mse'])}")
        if m.get("undefined"):
            lines.append(f"      ({', '.join(m['undefined']['metrics'])} undefined: "
                         f"{m['undefined']['reason']})")
    return lines
