"""Label columns: the task (regression or classification, inferred from the values unless set),
numeric or class-index values, and what counts as missing."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from biofuse.errors import DataError
from biofuse.pipeline.data.columns import ColumnMap
from biofuse.pipeline.data.validation import Drop

MISSING_LABELS = {"", "na", "nan", "null", "none", "n/a", "?"}
#: integer labels with at most this many distinct values are read as classes
MAX_INFERRED_CLASSES = 10


@dataclass
class LabelColumns:
    """The labels of every table row: values per column (class indices, -1 where missing, for
    classification; NaN where missing for regression), the task and why, the classes, per-column
    summaries of classes, warnings, and the rows dropped for missing every label."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    task: str | None = None
    task_reason: str = ""
    classes: tuple[str, ...] | None = None
    summaries: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)


def read_labels(table: pl.DataFrame, cols: ColumnMap, kept: np.ndarray, *, task: str = "auto",
                wanted: bool = True) -> LabelColumns:
    """The label columns of ``table``; the task is inferred unless ``task`` sets it. Of the
    ``kept`` rows, those missing every label are dropped. ``wanted`` False: labels are not
    expected (prediction on new sequences), so their absence is no warning."""
    if not cols.labels:
        if not wanted:
            return LabelColumns()
        return LabelColumns(warnings=["No label column found: fine for `biofuse extract`, but "
                                      "`biofuse fit` needs one (name it with --label-col)."])
    raw = {c: table[c].cast(pl.String).to_list() for c in cols.labels}
    missing = {c: [v is None or v.strip().lower() in MISSING_LABELS for v in raw[c]] for c in raw}
    numeric = {c: table[c].cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
               .to_numpy() for c in raw}
    non_numeric = {c: [v for v, miss, x in zip(raw[c], missing[c], numeric[c])
                       if not miss and np.isnan(x)] for c in raw}
    out = LabelColumns()
    out.task, out.task_reason = _infer_task(task, numeric, non_numeric, missing)
    if out.task == "classification" and len(cols.labels) > 1:
        raise DataError(f"Classification takes one label column; got {len(cols.labels)}.",
                        "Pass one --label-col, or --task regression for several numeric targets.")
    if out.task == "classification":
        c = cols.labels[0]
        present = [v.strip() for v, miss in zip(raw[c], missing[c]) if not miss]
        out.classes = tuple(_sort_classes(set(present)))
        index = {k: i for i, k in enumerate(out.classes)}
        out.values[c] = np.array([-1 if miss else index[v.strip()]
                                  for v, miss in zip(raw[c], missing[c])], dtype=np.int64)
        out.summaries[c] = {"classes": {k: present.count(k) for k in out.classes},
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
            out.values[c] = numeric[c]
    all_missing = np.all(np.stack([missing[c] for c in cols.labels]), axis=0)
    out.drops = [Drop(int(i), "missing label") for i in np.flatnonzero(all_missing & kept)]
    some_missing = np.any(np.stack([missing[c] for c in cols.labels]), axis=0) & kept \
        & ~all_missing
    if some_missing.any():
        out.warnings.append(f"{int(some_missing.sum())} kept rows miss some of their targets; "
                            "the trainer masks those targets in the loss.")
    return out


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
