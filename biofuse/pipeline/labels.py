"""Label columns: the task (regression or classification, inferred from the values unless set),
numeric or class-index values, and what counts as missing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from biofuse.errors import DataError
from biofuse.pipeline.columns import ColumnMap
from biofuse.pipeline.inspect import Report

if TYPE_CHECKING:
    from biofuse.pipeline.data import DataSpec

MISSING_LABELS = {"", "na", "nan", "null", "none", "n/a", "?"}
#: integer labels with at most this many distinct values are read as classes
MAX_INFERRED_CLASSES = 10


def read_labels(table: pl.DataFrame, cols: ColumnMap, spec: DataSpec, report: Report,
                keep: np.ndarray) -> tuple[dict[str, np.ndarray], str | None, tuple[str, ...] | None]:
    """The label columns of the rows of ``table``: values per column (class indices, -1 where
    missing, for classification), the task (inferred unless ``spec.task`` sets it) and the
    classes. Rows missing every label are dropped from ``keep`` under their reason."""
    if not cols.labels:
        if not spec.labels:
            return {}, None, None
        report.warnings.append("No label column found: fine for `biofuse extract`, but `biofuse fit` "
                               "needs one (name it with --label-col).")
        return {}, None, None
    raw = {c: table[c].cast(pl.String).to_list() for c in cols.labels}
    missing = {c: [v is None or v.strip().lower() in MISSING_LABELS for v in raw[c]] for c in raw}
    numeric = {c: table[c].cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
               .to_numpy() for c in raw}
    non_numeric = {c: [v for v, miss, x in zip(raw[c], missing[c], numeric[c])
                       if not miss and np.isnan(x)] for c in raw}
    task, why = _infer_task(spec.task, numeric, non_numeric, missing)
    report.task, report.task_reason = task, why
    if task == "classification" and len(cols.labels) > 1:
        raise DataError(f"Classification takes one label column; got {len(cols.labels)}.",
                        "Pass one --label-col, or --task regression for several numeric targets.")
    values: dict[str, np.ndarray] = {}
    classes = None
    if task == "classification":
        c = cols.labels[0]
        present = [v.strip() for v, miss in zip(raw[c], missing[c]) if not miss]
        classes = tuple(_sort_classes(set(present)))
        index = {k: i for i, k in enumerate(classes)}
        values[c] = np.array([-1 if miss else index[v.strip()]
                              for v, miss in zip(raw[c], missing[c])], dtype=np.int64)
        report.labels[c] = {"classes": {k: present.count(k) for k in classes},
                            "missing": int(sum(missing[c]))}
    else:
        for c in cols.labels:
            if non_numeric[c]:
                bad = sorted(set(non_numeric[c]))[:5]
                raise DataError(
                    f"Label column {c!r} holds non-numeric values {bad} in a regression task.",
                    "Fix those values, mark missing ones as empty or NA, or pass "
                    "--task classification.")
            infinite = np.flatnonzero(np.isinf(numeric[c]) & ~np.asarray(missing[c]))
            if len(infinite):
                shown = ", ".join(f"{i + 1} ({raw[c][i].strip()})" for i in infinite[:5])
                raise DataError(
                    f"Label column {c!r} holds {len(infinite)} infinite or overflowing values "
                    f"(data rows {shown}{', ...' if len(infinite) > 5 else ''}); a model cannot "
                    "be trained or scored on them.",
                    "Fix those values, or leave them empty (or NA) so they count as missing.")
            values[c] = numeric[c]
    all_missing = np.all(np.stack([missing[c] for c in cols.labels]), axis=0)
    for i in np.flatnonzero(all_missing & keep):
        report.drop("missing label", int(i))
        keep[i] = False
    some_missing = np.any(np.stack([missing[c] for c in cols.labels]), axis=0) & keep
    if some_missing.any():
        report.warnings.append(f"{int(some_missing.sum())} kept rows miss some of their targets; "
                               "the trainer masks those targets in the loss.")
    return values, task, classes


def _infer_task(task: str, numeric: dict, non_numeric: dict, missing: dict) -> tuple[str, str]:
    if task != "auto":
        return task, "set by --task"
    if any(non_numeric.values()):
        return "classification", "labels are not all numbers (pass --task to override)"
    if len(numeric) == 1:
        (c, x), = numeric.items()
        present = x[~np.asarray(missing[c])]
        distinct = np.unique(present)
        if present.size and np.all(np.isfinite(distinct)) \
                and np.all(distinct == np.round(distinct)) \
                and len(distinct) <= MAX_INFERRED_CLASSES:
            return "classification", (f"integer labels with {len(distinct)} distinct values "
                                      "(pass --task regression to override)")
    return "regression", "numeric labels (pass --task to override)"


def _sort_classes(values: set[str]) -> list[str]:
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)
