"""Evaluation metrics, per target and averaged: Spearman, Pearson, R², MSE for regression;
accuracy and macro-F1 for classification, computed by scipy and scikit-learn. NaN targets are
skipped; a metric that is undefined (fewer than two rows, constant labels or predictions) is NaN
here and null, with the reason, in metrics.json."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from sklearn import metrics as skm


def _varies(x: np.ndarray) -> bool:
    """Whether ``x`` has a spread a metric can divide by (its centred sum of squares is not 0,
    also when it underflows: values 1e-295 apart do not vary)."""
    return float(((x - x.mean()) ** 2).sum()) > 0


def _correlation(fn, a: np.ndarray, b: np.ndarray) -> float:
    """``fn`` (scipy's spearmanr or pearsonr) of a and b; NaN where it is undefined (an input
    that does not vary: for Spearman, whose ranks do not), without scipy's warning."""
    varies = (lambda x: np.ptp(x) > 0) if fn is stats.spearmanr else _varies
    if not (varies(a) and varies(b)):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(fn(a, b)[0])


def regression_metrics(y: np.ndarray, pred: np.ndarray, names: list[str]) -> dict:
    """y, pred: [N, targets]."""
    out: dict = {"per_target": {}}
    for j, name in enumerate(names):
        ok = ~np.isnan(y[:, j])
        t, p = y[ok, j], pred[ok, j]
        if len(t) < 2:
            out["per_target"][name] = {"n": int(len(t))}
            continue
        out["per_target"][name] = {
            "n": int(len(t)), "spearman": _correlation(stats.spearmanr, t, p),
            "pearson": _correlation(stats.pearsonr, t, p),
            "mse": float(skm.mean_squared_error(t, p)),
            "r2": float(skm.r2_score(t, p)) if _varies(t) else float("nan")}
    for k in ("spearman", "pearson", "r2", "mse"):
        vals = [m[k] for m in out["per_target"].values() if k in m and not np.isnan(m[k])]
        out[k] = float(np.mean(vals)) if vals else float("nan")
    return out


def classification_metrics(y: np.ndarray, pred: np.ndarray, n_classes: int) -> dict:
    """y: [N] class index (-1 = missing); pred: [N] predicted index. Macro-F1 averages the
    classes that occur in the labels or the predictions."""
    ok = y >= 0
    y, pred = y[ok], pred[ok]
    if not len(y):
        return {"n": 0, "accuracy": float("nan"), "macro_f1": float("nan")}
    return {"n": int(len(y)), "accuracy": float(skm.accuracy_score(y, pred)),
            "macro_f1": float(skm.f1_score(y, pred, average="macro", zero_division=0))}


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
