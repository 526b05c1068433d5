"""The metrics come from scipy and scikit-learn now; they give the values biofuse's own code
gave before (that code is kept here as the reference), on any data, ties and NaN included."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from biofuse.pipeline.train.metrics import classification_metrics, regression_metrics


def _rank(x):
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


def _pearson(a, b):
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def reference_regression(y, pred, names):
    out = {"per_target": {}}
    for j, name in enumerate(names):
        ok = ~np.isnan(y[:, j])
        t, p = y[ok, j], pred[ok, j]
        if len(t) < 2:
            out["per_target"][name] = {"n": int(len(t))}
            continue
        mse = float(((t - p) ** 2).mean())
        var = float(((t - t.mean()) ** 2).mean())
        # the one intended change: Pearson of a constant input is undefined; the old code gave
        # the rounding noise of its mean (0.0 for [0.1, 0.1, 0.1], whose mean is 0.1 + 2e-17)
        pearson = _pearson(t, p) if np.ptp(t) > 0 and np.ptp(p) > 0 else float("nan")
        out["per_target"][name] = {"n": int(len(t)), "spearman": _pearson(_rank(t), _rank(p)),
                                   "pearson": pearson, "mse": mse,
                                   "r2": 1 - mse / var if var > 0 else float("nan")}
    for k in ("spearman", "pearson", "r2", "mse"):
        vals = [m[k] for m in out["per_target"].values() if k in m and not np.isnan(m[k])]
        out[k] = float(np.mean(vals)) if vals else float("nan")
    return out


def reference_classification(y, pred, n_classes):
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


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and np.isnan(a):
        return isinstance(b, float) and np.isnan(b)
    return np.isclose(a, b, rtol=1e-9, atol=1e-12)


#: labels as tables hold them (a grid of hundredths: ties, constants), and missing ones
values = st.one_of(st.integers(-500, 500).map(lambda i: i / 100),
                   st.sampled_from([0.0, 1.0, np.nan]))


@settings(max_examples=250, deadline=None, derandomize=True)
@given(st.integers(0, 30).flatmap(lambda n: st.tuples(
    st.lists(st.tuples(values, values), min_size=n, max_size=n),
    st.lists(st.integers(-500, 500).map(lambda i: i / 100), min_size=n, max_size=n))))
def test_regression_metrics_are_unchanged(data):
    pairs, pred2 = data
    y = np.array([[a, b] for a, b in pairs], dtype=float).reshape(-1, 2)
    pred = np.column_stack([np.nan_to_num(y[:, 0], nan=0.5) * 0.7 + 0.1,
                            np.array(pred2, dtype=float)]) if len(pairs) else np.zeros((0, 2))
    assert same(regression_metrics(y, pred, ["a", "b"]), reference_regression(y, pred, ["a", "b"]))


@settings(max_examples=250, deadline=None, derandomize=True)
@given(st.integers(1, 5).flatmap(lambda k: st.tuples(
    st.just(k), st.lists(st.tuples(st.integers(-1, k - 1), st.integers(0, k - 1)),
                         max_size=40))))
def test_classification_metrics_are_unchanged(data):
    k, pairs = data
    y = np.array([a for a, _ in pairs], dtype=int)
    pred = np.array([b for _, b in pairs], dtype=int)
    assert same(classification_metrics(y, pred, k), reference_classification(y, pred, k))
