"""From a user's table to a validated :class:`Dataset`: columns, sequences, labels, splits.

Nothing is dropped silently: every row that does not make it into the dataset is counted under a
reason, with examples, in the :class:`Report` that ``biofuse data inspect`` prints.

The dataset frame has one row per example and the columns ``id``, ``split``, ``group``, ``mrna``
(RNA alphabet, on the codon grid), ``dna`` (DNA alphabet), ``protein`` (one token per codon when
derived), and one ``label:<name>`` column per target. A modality may be null for a row (a
non-coding transcript has no protein).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np
import polars as pl

from biofuse.errors import DataError
from biofuse.options import check, option
from biofuse.pipeline.data import dogma, splits
from biofuse.pipeline.data.columns import ColumnMap, resolve_columns
from biofuse.pipeline.data.labels import read_labels
from biofuse.pipeline.data.sequences import COLUMNS, read_sequences, sequence_column_role
from biofuse.pipeline.data.tables import read_table
from biofuse.pipeline.data.validation import Drop, Report

TASKS = ("auto", "regression", "classification")


@dataclass(frozen=True)
class DataSpec:
    """Everything that determines how a table becomes a dataset (recorded with every result).
    Each field is checked for its type and allowed values, so a wrong shape from Python, an
    experiment file or a saved run is one clear error."""

    prefix = ""
    path: str = option(help="The table: CSV, TSV, Parquet or FASTA (gzip too).", cli=False)
    sequence_col: str | None = option(None, "Column with the mRNA / CDS (T or U).")
    dna_col: str | None = option(None, "Column with a DNA sequence given separately.")
    protein_col: str | None = option(None, "Column with a protein sequence given separately.")
    label_cols: tuple[str, ...] = option((), "Target columns.", flag="--label-col")
    split_col: str | None = option(None, "Column with train/val/test.")
    group_col: str | None = option(None, "Column of groups that must not span splits.")
    id_col: str | None = option(None, "Column of unique ids.")
    task: str = option("auto", "regression, classification, or auto.", choices=TASKS)
    orf: str = option(dogma.DEFAULT_ORF_POLICY, "How a sequence is put on the codon grid.",
                      choices=dogma.ORF_POLICIES)
    genetic_code: int = option(1, "NCBI genetic code table id.")
    split_seed: int = option(0, "Seed of a random or group split.", min=0)
    dedup: str = option("none", "What to do with identical inputs.",
                        choices=splits.DEDUP_POLICIES)
    sep: str | None = option(None, "Field separator of a text table.")
    labels: bool = option(True, "False: read no label column at all (prediction on new "
                          "sequences).", cli=False)

    def __post_init__(self) -> None:
        if isinstance(self.path, os.PathLike):
            object.__setattr__(self, "path", os.fspath(self.path))
        if isinstance(self.label_cols, list):
            object.__setattr__(self, "label_cols", tuple(self.label_cols))
        check(self)
        dogma.genetic_code(self.genetic_code)  # raises for an unknown table

    def cli_flags(self) -> list[str]:
        """The command-line flags that rebuild this spec from its table (non-defaults only), so
        a hint such as "run `biofuse extract ...`" reads the table exactly as this spec does."""
        flags: list[str] = []
        default = DataSpec(path=self.path)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("path", "labels") or value == getattr(default, f.name):
                continue
            flag = "--" + f.name.replace("_", "-")
            if f.name == "label_cols":
                for c in value:
                    flags += ["--label-col", str(c)]
            else:
                flags += [flag, str(value)]
        return flags


@dataclass(frozen=True)
class Dataset:
    frame: pl.DataFrame
    spec: DataSpec
    columns: ColumnMap
    task: str | None
    label_names: tuple[str, ...]
    classes: tuple[str, ...] | None
    report: Report

    @property
    def hash(self) -> str:
        return self.report.dataset_hash

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modalities present in at least one row."""
        return tuple(m for m in COLUMNS if self.frame[m].null_count() < self.frame.height)

    def labels(self) -> np.ndarray:
        """[rows, targets] float64 (NaN = missing); class indices for classification."""
        cols = [f"label:{n}" for n in self.label_names]
        return self.frame.select(cols).to_numpy().astype(np.float64)


def load_dataset(spec: DataSpec) -> Dataset:
    """Read, map, validate and split ``spec.path``; raise :class:`DataError` for unusable input.

    Each step (sequences, labels, splits, duplicates) sees the rows still kept and returns the
    rows it drops with their reason; they are applied here, in that order, and counted in the
    dataset's :class:`Report`.
    """
    table, info = read_table(spec.path, spec.sep)
    cols = resolve_columns(table.columns, sequence=spec.sequence_col, dna=spec.dna_col,
                           protein=spec.protein_col, labels=spec.label_cols, split=spec.split_col,
                           id=spec.id_col, group=spec.group_col)
    if not spec.labels:
        cols = dataclasses.replace(cols, labels=())
    _check_column_types(table, cols, spec.path)
    report = Report(str(spec.path), info.format, info.separator, table.height,
                    orf_policy=spec.orf, genetic_code=spec.genetic_code)
    cols, warning = sequence_column_role(table, cols)
    report.warnings += [warning] if warning else []
    report.columns = {"sequence": cols.sequence, "dna": cols.dna, "protein": cols.protein,
                      "labels": list(cols.labels), "split": cols.split, "id": cols.id,
                      "group": cols.group, "auto_detected": list(cols.detected),
                      "unused": [c for c in table.columns if c not in cols.used()]}

    kept = np.ones(table.height, dtype=bool)

    def apply(drops: list[Drop]) -> np.ndarray:
        report.record(drops)
        out = kept.copy()
        out[[d.row for d in drops]] = False
        return out

    seqs = read_sequences(table, cols, spec.orf, spec.genetic_code)
    report.normalised, report.coding_notes = seqs.fixes, seqs.coding_notes
    kept = apply(seqs.drops)
    labels = read_labels(table, cols, kept, task=spec.task, wanted=spec.labels)
    report.task, report.task_reason = labels.task, labels.task_reason
    report.labels.update(labels.summaries)
    report.warnings += labels.warnings
    kept = apply(labels.drops)
    ids = _ids(table, cols)
    groups = (table[cols.group].cast(pl.String).to_list() if cols.group else [None] * table.height)
    split = splits.assign_splits(table, cols, kept, groups, spec.split_seed)
    report.split_source = split.source
    report.warnings += split.warnings
    kept = apply(split.drops)

    rows = np.flatnonzero(kept)
    inputs = [tuple(seqs.values[m][i] for m in COLUMNS) for i in rows]
    kept_splits = [split.values[i] for i in rows]
    report.duplicates, warnings = splits.duplicate_summary(inputs, kept_splits,
                                                           [ids[i] for i in rows])
    report.warnings += warnings
    kept = apply([Drop(int(rows[j]), f"duplicate input (--dedup {spec.dedup})",
                       f"id {ids[rows[j]]}")
                  for j in splits.dedup_rows(inputs, kept_splits, spec.dedup)])
    rows = np.flatnonzero(kept)

    data = {"id": [ids[i] for i in rows], "split": [split.values[i] for i in rows],
            "group": [groups[i] for i in rows]}
    for m in COLUMNS:
        data[m] = [seqs.values[m][i] for i in rows]
    schema = {k: pl.String for k in data}
    for name, values in labels.values.items():
        data[f"label:{name}"] = values[rows]
        schema[f"label:{name}"] = pl.Int64 if labels.task == "classification" else pl.Float64
    frame = pl.DataFrame(data, schema=schema)
    report.rows_kept = frame.height
    if frame.height == 0:
        raise DataError(f"No rows of {spec.path} are usable: {_reasons(report)}.",
                        "Fix the rows named above, or choose another --orf policy.")
    _summarise(frame, cols, report)
    report.dataset_hash = dataset_hash(frame, labels.task, labels.classes)
    return Dataset(frame, spec, cols, labels.task, tuple(labels.values), labels.classes, report)


def _check_column_types(table: pl.DataFrame, cols: ColumnMap, path) -> None:
    """Every used column must hold scalars biofuse can read as text or numbers (a Parquet file
    can hold bytes, lists or structs)."""
    for name in cols.used():
        dtype = table.schema[name]
        if dtype == pl.Binary:
            what = "raw bytes (binary)"
        elif isinstance(dtype, (pl.List, pl.Array, pl.Struct, pl.Object)):
            what = f"values of type {dtype}"
        else:
            continue
        raise DataError(f"Column {name!r} of {path} holds {what}; biofuse reads sequences, "
                        "labels, splits, ids and groups as plain text or numbers.",
                        "Store it as a string or numeric column (e.g. with polars: "
                        f"pl.col({name!r}).cast(pl.String)), or name another column.")


def _ids(table: pl.DataFrame, cols: ColumnMap) -> list[str]:
    if cols.id is None:
        return [f"row-{i + 1}" for i in range(table.height)]
    ids = table[cols.id].cast(pl.String).to_list()
    counts = Counter(ids)
    dup = [k for k, v in counts.items() if v > 1]
    if None in counts:
        raise DataError(f"The id column {cols.id!r} has {counts[None]} empty values.",
                        "Fill them, or omit --id-col to number the rows (row-1, row-2, ...).")
    if dup:
        raise DataError(
            f"The id column {cols.id!r} has {len(dup)} duplicated ids, e.g. {dup[:3]}; predictions "
            "and cached embeddings are reported by id, so ids must be unique.",
            "Make them unique, or pass another --id-col (or none, to number the rows).")
    return ids


def _summarise(frame: pl.DataFrame, cols: ColumnMap, report: Report) -> None:
    for m in COLUMNS:
        lengths = frame[m].drop_nulls().str.len_chars().to_numpy()
        if lengths.size:
            q = np.percentile(lengths, [0, 5, 50, 95, 100])
            report.lengths[m] = {"rows": int(lengths.size), "min": int(q[0]), "p5": float(q[1]),
                                 "median": float(q[2]), "p95": float(q[3]), "max": int(q[4]),
                                 "mean": float(lengths.mean())}
    for c, summary in list(report.labels.items()) + [(c, None) for c in cols.labels
                                                        if c not in report.labels]:
        if summary is None:
            x = frame[f"label:{c}"].to_numpy()
            x = x[~np.isnan(x)]
            report.labels[c] = {"n": int(x.size), "missing": int(frame.height - x.size),
                                "mean": float(x.mean()) if x.size else None,
                                "std": float(x.std()) if x.size else None,
                                "min": float(x.min()) if x.size else None,
                                "max": float(x.max()) if x.size else None}
    sizes = frame["split"].value_counts()
    report.split_sizes = {s: int(sizes.filter(pl.col("split") == s)["count"].sum())
                          for s in splits.SPLITS}
    for s, k in report.split_sizes.items():
        if k == 0:
            report.warnings.append(f"The {s} split is empty.")


def _reasons(report: Report) -> str:
    return "; ".join(f"{k}: {v}" for k, v in report.dropped.items()) or "no rows"


def dataset_hash(frame: pl.DataFrame, task: str | None, classes: tuple[str, ...] | None) -> str:
    """SHA-256 of the dataset's content (ids, splits, groups, sequences, labels, task, classes)."""
    h = hashlib.sha256()
    h.update(json.dumps({"columns": frame.columns, "task": task,
                         "classes": list(classes) if classes else None}).encode())
    for row in frame.iter_rows():
        h.update(b"\x1e" + "\x1f".join("" if v is None else repr(v) for v in row).encode())
    return h.hexdigest()
