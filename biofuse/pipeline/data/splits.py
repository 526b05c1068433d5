"""Train/validation/test splits and cross-split duplicates.

A given split column is normalised (``training``, ``valid``, ``dev``, ... are understood).
Without one, rows get a seeded random 70/15/15 split, or a group split in which no group (gene,
cluster, ...) spans two splits. Identical inputs in two splits leak test data into training; they
are always reported, and ``--dedup`` can remove them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from biofuse.errors import ConfigError, DataError
from biofuse.pipeline.data.columns import ColumnMap
from biofuse.pipeline.data.validation import Drop

SPLITS = ("train", "val", "test")
DEDUP_POLICIES = ("none", "leak", "first")
DEDUP_HELP = {
    "none": "keep every row; report identical inputs found in more than one split",
    "leak": "drop validation/test rows whose input also occurs in an earlier split "
            "(train before val before test)",
    "first": "keep only the first row of each distinct input",
}
_SPELLINGS = {
    "train": "train", "training": "train", "tr": "train", "trn": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val", "development": "val",
    "eval": "val", "va": "val",
    "test": "test", "testing": "test", "tst": "test", "te": "test", "holdout": "test",
}


def normalise_split(value: str | None) -> str | None:
    """Map a split name to train/val/test; ``None`` for a missing value, '?' for an unknown one."""
    if value is None:
        return None
    v = str(value).strip().lower()
    if not v:
        return None
    return _SPELLINGS.get(v, "?")


def check_split_values(values: Sequence[str | None], raw: Sequence[str | None], col: str) -> None:
    unknown = sorted({str(r) for r, v in zip(raw, values) if v == "?"})
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:8])
        raise DataError(
            f"The split column {col!r} holds values biofuse does not recognise: {shown}.",
            "Use train/val/test (or training/validation/testing, dev, holdout), or pass "
            "--split-col to name another column, or omit it for a seeded 70/15/15 split.")


def random_split(n: int, seed: int, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
                 ) -> list[str]:
    """Seeded random split of ``n`` rows by ``fractions`` (train, val, test)."""
    _check_fractions(fractions)
    order = np.random.default_rng(seed).permutation(n)
    n_train = round(fractions[0] * n)
    n_val = round(fractions[1] * n)
    out = ["test"] * n
    for rank, row in enumerate(order):
        out[row] = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return out


def group_split(groups: Sequence[str], seed: int,
                fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> list[str]:
    """Seeded split in which every group lands in one split, filling splits to ``fractions`` of rows."""
    _check_fractions(fractions)
    sizes: dict[str, int] = defaultdict(int)
    for g in groups:
        sizes[g] += 1
    names = list(sizes)  # first-appearance order, then a seeded shuffle
    order = np.random.default_rng(seed).permutation(len(names))
    n = len(groups)
    bounds = (fractions[0] * n, (fractions[0] + fractions[1]) * n)
    assigned: dict[str, str] = {}
    filled = 0
    for idx in order:
        g = names[idx]
        split = "train" if filled < bounds[0] else "val" if filled < bounds[1] else "test"
        assigned[g] = split
        filled += sizes[g]
    return [assigned[g] for g in groups]


def _check_fractions(fractions: tuple[float, float, float]) -> None:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(f"Split fractions {fractions} are not three non-negative numbers summing to 1.",
                          "Pass them as train,val,test, e.g. 0.7,0.15,0.15.")


def cross_split_duplicates(inputs: Sequence[tuple], splits: Sequence[str]) -> dict[tuple, list[int]]:
    """Inputs that occur in more than one split -> the row indices holding them."""
    rows: dict[tuple, list[int]] = defaultdict(list)
    for i, key in enumerate(inputs):
        rows[key].append(i)
    return {k: idx for k, idx in rows.items() if len({splits[i] for i in idx}) > 1}


def dedup_rows(inputs: Sequence[tuple], splits: Sequence[str], policy: str) -> list[int]:
    """Row indices to drop under ``policy`` (see :data:`DEDUP_HELP`)."""
    if policy not in DEDUP_POLICIES:
        raise ConfigError(f"Unknown --dedup policy {policy!r}.",
                          f"Use one of: {', '.join(DEDUP_POLICIES)}.")
    if policy == "none":
        return []
    drop = []
    if policy == "first":
        seen: set[tuple] = set()
        for i, key in enumerate(inputs):
            if key in seen:
                drop.append(i)
            seen.add(key)
        return drop
    rank = {s: r for r, s in enumerate(SPLITS)}
    earliest: dict[tuple, int] = {}
    for key, split in zip(inputs, splits):
        earliest[key] = min(earliest.get(key, 99), rank[split])
    return [i for i, (key, split) in enumerate(zip(inputs, splits)) if rank[split] > earliest[key]]


@dataclass
class SplitColumn:
    """The split of every table row (None for rows not kept), where it came from, warnings, and
    the rows dropped for a missing split."""

    values: list[str | None]
    source: str
    warnings: list[str] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)


def assign_splits(table: pl.DataFrame, cols: ColumnMap, kept: np.ndarray, groups: list,
                  seed: int) -> SplitColumn:
    """The table's split column (normalised; kept rows without one are dropped), or else a
    seeded split of the ``kept`` rows: by ``groups`` when the table has a group column, random
    70/15/15 otherwise."""
    n = table.height
    if cols.split:
        raw = table[cols.split].cast(pl.String).to_list()
        values = [normalise_split(v) for v in raw]
        check_split_values(values, raw, cols.split)
        out = SplitColumn(values, f"column {cols.split!r}")
        out.drops = [Drop(int(i), "missing split") for i in np.flatnonzero(kept)
                     if values[i] is None]
        if cols.group:
            still = kept.copy()
            still[[d.row for d in out.drops]] = False
            out.warnings += _groups_spanning(groups, values, still)
        return out
    rows = np.flatnonzero(kept)
    values: list[str | None] = [None] * n
    if cols.group:
        kept_groups = [groups[i] if groups[i] is not None else f"\0row{i}" for i in rows]
        assigned = group_split(kept_groups, seed)
        source = f"group split on {cols.group!r}, seed {seed}"
    else:
        assigned = random_split(len(rows), seed)
        source = f"random 70/15/15, seed {seed}"
    for i, s in zip(rows, assigned):
        values[i] = s
    return SplitColumn(values, source)


def _groups_spanning(groups: list, split_of: list, kept: np.ndarray) -> list[str]:
    seen: dict[str, set[str]] = defaultdict(set)
    for i in np.flatnonzero(kept):
        if groups[i] is not None and split_of[i] is not None:
            seen[groups[i]].add(split_of[i])
    spanning = [g for g, s in seen.items() if len(s) > 1]
    if not spanning:
        return []
    return [f"{len(spanning)} groups span more than one split (e.g. {spanning[:3]}); the given "
            "split leaks across groups."]


def duplicate_summary(inputs: Sequence[tuple], split_of: Sequence[str], ids: Sequence[str]
                      ) -> tuple[dict, list[str]]:
    """Identical inputs: how many rows repeat an earlier row's input, which inputs occur in more
    than one split (with examples), and the warning that says so."""
    cross = cross_split_duplicates(inputs, split_of)
    examples = [sorted(f"{ids[i]} ({split_of[i]})" for i in idx)
                for idx in list(cross.values())[:5]]
    summary = {"identical_inputs_total": len(inputs) - len(set(inputs)),
               "inputs_in_several_splits": len(cross),
               "rows_involved": sum(len(v) for v in cross.values()), "examples": examples}
    if not cross:
        return summary, []
    return summary, [
        f"{len(cross)} distinct inputs occur in more than one split "
        f"({summary['rows_involved']} rows): {_what_leaks(cross.values(), split_of)}. "
        "Pass --dedup leak to drop the later copies, or --dedup first to keep one row each."]


def _what_leaks(groups, split_of: Sequence[str]) -> str:
    """Which split leaks into which, worst first: test into training, test into validation,
    validation into training (model selection then scores rows the model trained on)."""
    pairs = {frozenset(split_of[i] for i in idx) for idx in groups}
    if any({"test", "train"} <= p for p in pairs):
        return "test data leaks into training"
    if any({"test", "val"} <= p for p in pairs):
        return "test data leaks into validation (and so into model selection)"
    return ("validation data leaks into training, so model selection scores rows the model "
            "was trained on (the test split is clean)")


def split_rows(split: Sequence[str] | np.ndarray, echo=lambda s: None) -> dict[str, np.ndarray]:
    """Row indices of the train, val and test splits of a training run (fit, finetune). An empty
    training split is an error; an empty validation split a warning, since early stopping and
    selection then fall back to the training rows."""
    split = np.asarray(split)
    rows = {s: np.flatnonzero(split == s) for s in ("train", "val", "test")}
    if not len(rows["train"]):
        raise DataError("The training split is empty.", "Check the split column or fractions.")
    if not len(rows["val"]):
        echo("warning: the validation split is empty, so early stopping and model selection "
             "use the training rows; give the table a split column with 'val' rows for an "
             "honest selection")
    return rows
