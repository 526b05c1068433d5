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
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import polars as pl

from biofuse.errors import ConfigError, DataError, OrfError, SequenceError
from biofuse.modality import Modality
from biofuse.pipeline import dogma, splits
from biofuse.pipeline.columns import ColumnMap, resolve_columns
from biofuse.pipeline.inspect import Report
from biofuse.pipeline.labels import read_labels
from biofuse.pipeline.tables import read_table

TASKS = ("auto", "regression", "classification")
#: the sequence columns of a dataset frame, one per modality (``Modality.column``), in the order
#: of the frame (which enters the dataset hash)
_RNA, _DNA, _PROTEIN = Modality.RNA.column, Modality.DNA.column, Modality.PROTEIN.column
MODALITIES = (_RNA, _DNA, _PROTEIN)


@dataclass(frozen=True)
class DataSpec:
    """Everything that determines how a table becomes a dataset (recorded with every result)."""

    path: str
    sequence_col: str | None = None
    dna_col: str | None = None
    protein_col: str | None = None
    label_cols: tuple[str, ...] = ()
    split_col: str | None = None
    group_col: str | None = None
    id_col: str | None = None
    task: str = "auto"
    orf: str = dogma.DEFAULT_ORF_POLICY
    genetic_code: int = 1
    split_seed: int = 0
    dedup: str = "none"
    sep: str | None = None
    labels: bool = True  # False: read no label column at all (prediction on new sequences)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"Unknown task {self.task!r}.", f"Use one of: {', '.join(TASKS)}.")
        if self.orf not in dogma.ORF_POLICIES:
            raise ConfigError(f"Unknown ORF policy {self.orf!r}.",
                              f"Use one of: {', '.join(dogma.ORF_POLICIES)}.")
        if self.dedup not in splits.DEDUP_POLICIES:
            raise ConfigError(f"Unknown --dedup policy {self.dedup!r}.",
                              f"Use one of: {', '.join(splits.DEDUP_POLICIES)}.")
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
        return tuple(m for m in MODALITIES if self.frame[m].null_count() < self.frame.height)

    def labels(self) -> np.ndarray:
        """[rows, targets] float64 (NaN = missing); class indices for classification."""
        cols = [f"label:{n}" for n in self.label_names]
        return self.frame.select(cols).to_numpy().astype(np.float64)


def load_dataset(spec: DataSpec) -> Dataset:
    """Read, map, validate and split ``spec.path``; raise :class:`DataError` for unusable input."""
    table, info = read_table(spec.path, spec.sep)
    cols = resolve_columns(table.columns, sequence=spec.sequence_col, dna=spec.dna_col,
                           protein=spec.protein_col, labels=spec.label_cols, split=spec.split_col,
                           id=spec.id_col, group=spec.group_col)
    if not spec.labels:
        cols = dataclasses.replace(cols, labels=())
    _check_column_types(table, cols, spec.path)
    report = Report(str(spec.path), info.format, info.separator, table.height,
                    orf_policy=spec.orf, genetic_code=spec.genetic_code)
    cols = _sequence_column_type(table, cols, report)
    report.columns = {"sequence": cols.sequence, "dna": cols.dna, "protein": cols.protein,
                      "labels": list(cols.labels), "split": cols.split, "id": cols.id,
                      "group": cols.group, "auto_detected": list(cols.detected),
                      "unused": [c for c in table.columns if c not in cols.used()]}

    keep = np.ones(table.height, dtype=bool)
    seqs = _sequences(table, cols, spec, report, keep)
    label_values, task, classes = read_labels(table, cols, spec, report, keep)
    ids = _ids(table, cols)
    groups = (table[cols.group].cast(pl.String).to_list() if cols.group else [None] * table.height)
    split_of = _splits(table, cols, spec, report, keep, groups)

    rows = np.flatnonzero(keep)
    inputs = [(seqs[_RNA][i], seqs[_DNA][i], seqs[_PROTEIN][i]) for i in rows]
    kept_splits = [split_of[i] for i in rows]
    _report_duplicates(inputs, kept_splits, [ids[i] for i in rows], report)
    for j in splits.dedup_rows(inputs, kept_splits, spec.dedup):
        report.drop(f"duplicate input (--dedup {spec.dedup})", int(rows[j]), f"id {ids[rows[j]]}")
        keep[rows[j]] = False
    rows = np.flatnonzero(keep)

    data = {"id": [ids[i] for i in rows], "split": [split_of[i] for i in rows],
            "group": [groups[i] for i in rows]}
    for m in MODALITIES:
        data[m] = [seqs[m][i] for i in rows]
    schema = {k: pl.String for k in data}
    for name, values in label_values.items():
        data[f"label:{name}"] = values[rows]
        schema[f"label:{name}"] = pl.Int64 if task == "classification" else pl.Float64
    frame = pl.DataFrame(data, schema=schema)
    report.rows_kept = frame.height
    if frame.height == 0:
        raise DataError(f"No rows of {spec.path} are usable: {_reasons(report)}.",
                        "Fix the rows named above, or choose another --orf policy.")
    _summarise(frame, cols, report)
    report.dataset_hash = dataset_hash(frame, task, classes)
    return Dataset(frame, spec, cols, task, tuple(label_values), classes, report)


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


def _sequence_column_type(table: pl.DataFrame, cols: ColumnMap, report: Report) -> ColumnMap:
    """A generic 'sequence' column holding amino acids is read as the protein column."""
    if cols.sequence is None or cols.protein is not None:
        return cols
    sample = "".join(s for s in table[cols.sequence].cast(pl.String).head(1000).to_list() if s)
    sample = dogma.strip_whitespace(sample).upper()
    # Nucleotide tables are ~100% ACGTUN even with a few bad rows; proteins are ~25%.
    share = sum(sample.count(c) for c in "ACGTUN") / max(len(sample), 1)
    if sample and share < 0.75:
        report.warnings.append(
            f"Column {cols.sequence!r} holds amino acids (only {share:.0%} of its letters are "
            "A/C/G/T/U/N); it is read as protein. Pass --protein-col to say so explicitly.")
        return ColumnMap(None, cols.dna, cols.sequence, cols.labels, cols.split, cols.id,
                         cols.group, cols.detected)
    return cols


def _sequences(table: pl.DataFrame, cols: ColumnMap, spec: DataSpec, report: Report,
               keep: np.ndarray) -> dict[str, list[str | None]]:
    """Normalise every modality, apply the ORF policy, derive what can be derived."""
    n = table.height
    raw = {m: (table[c].cast(pl.String).to_list() if c else [None] * n)
           for m, c in ((_RNA, cols.sequence), (_DNA, cols.dna), (_PROTEIN, cols.protein))}
    out: dict[str, list[str | None]] = {m: [None] * n for m in MODALITIES}
    fixes: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    for i in range(n):
        try:
            values = {m: _normalise(m, raw[m][i], fixes) for m in MODALITIES}
        except SequenceError as exc:
            report.drop("invalid character", i, exc.problem)
            keep[i] = False
            continue
        mrna, dna, protein = values[_RNA], values[_DNA], values[_PROTEIN]
        if mrna:
            try:
                view = dogma.apply_orf_policy(mrna, spec.orf, spec.genetic_code)
            except OrfError as exc:
                report.drop(f"{spec.orf}: {exc.reason}", i, f"length {len(mrna)}, starts {mrna[:6]}")
                keep[i] = False
                continue
            _coding_notes(view, notes, spec.genetic_code)
            mrna = view.mrna
            if protein is None:
                protein = view.protein
            elif len(protein) != view.n_codons:
                notes["given protein length differs from the codon grid"] += 1
            if dna is None:
                dna = dogma.rna_to_dna(mrna)
        if not (mrna or dna or protein):
            report.drop("empty sequence", i)
            keep[i] = False
            continue
        out[_RNA][i], out[_DNA][i], out[_PROTEIN][i] = mrna, dna, protein
    report.normalised = dict(fixes)
    report.coding_notes = dict(notes)
    return out


def _normalise(modality: str, value: str | None, fixes: Counter[str]) -> str | None:
    if value is None:
        return None
    stripped = dogma.strip_whitespace(value)
    if not stripped:
        return None
    if stripped != value:
        fixes["whitespace removed"] += 1
    if stripped != stripped.upper():
        fixes["lower case upper-cased"] += 1
    if modality == _PROTEIN:
        return dogma.normalise_protein(stripped)
    seq = dogma.normalise_nucleotides(stripped)
    if "T" in stripped.upper() and modality == _RNA:
        fixes["DNA alphabet (T) read as mRNA"] += 1
    if seq.count("N") > stripped.upper().count("N"):
        fixes["IUPAC ambiguity codes stored as N"] += 1
    return dogma.rna_to_dna(seq) if modality == _DNA else seq


def _coding_notes(view: dogma.CodingView, notes: Counter[str], table_id: int) -> None:
    code = dogma.genetic_code(table_id)
    prot = view.protein
    if "*" in prot[:-1]:
        notes["internal stop codon (token '*')"] += 1
    if len(view.mrna) % 3:
        notes["partial trailing codon (token 'X')"] += 1
    if "X" in prot[: len(view.mrna) // 3]:
        notes["ambiguous codon (token 'X')"] += 1
    if view.mrna[:3] not in code.starts:
        notes["no start codon at the first base"] += 1
    if view.mrna[-3:] not in code.stops:
        notes["no stop codon at the end"] += 1


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


def _splits(table: pl.DataFrame, cols: ColumnMap, spec: DataSpec, report: Report,
            keep: np.ndarray, groups: list[str | None]) -> list[str | None]:
    n = table.height
    if cols.split:
        raw = table[cols.split].cast(pl.String).to_list()
        out = [splits.normalise_split(v) for v in raw]
        splits.check_split_values(out, raw, cols.split)
        for i in np.flatnonzero(keep):
            if out[i] is None:
                report.drop("missing split", int(i))
                keep[i] = False
        report.split_source = f"column {cols.split!r}"
        if cols.group:
            _report_groups_spanning(groups, out, keep, report)
        return out
    rows = np.flatnonzero(keep)
    out: list[str | None] = [None] * n
    if cols.group:
        kept_groups = [groups[i] if groups[i] is not None else f"\0row{i}" for i in rows]
        assigned = splits.group_split(kept_groups, spec.split_seed)
        report.split_source = f"group split on {cols.group!r}, seed {spec.split_seed}"
    else:
        assigned = splits.random_split(len(rows), spec.split_seed)
        report.split_source = f"random 70/15/15, seed {spec.split_seed}"
    for i, s in zip(rows, assigned):
        out[i] = s
    return out


def _report_groups_spanning(groups: list, split_of: list, keep: np.ndarray, report: Report) -> None:
    seen: dict[str, set[str]] = defaultdict(set)
    for i in np.flatnonzero(keep):
        if groups[i] is not None and split_of[i] is not None:
            seen[groups[i]].add(split_of[i])
    spanning = [g for g, s in seen.items() if len(s) > 1]
    if spanning:
        report.warnings.append(f"{len(spanning)} groups span more than one split (e.g. "
                               f"{spanning[:3]}); the given split leaks across groups.")


def _report_duplicates(inputs: list[tuple], split_of: list[str], ids: list[str],
                       report: Report) -> None:
    cross = splits.cross_split_duplicates(inputs, split_of)
    within = len(inputs) - len(set(inputs))
    examples = [sorted(f"{ids[i]} ({split_of[i]})" for i in idx) for idx in list(cross.values())[:5]]
    report.duplicates = {"identical_inputs_total": within,
                         "inputs_in_several_splits": len(cross),
                         "rows_involved": sum(len(v) for v in cross.values()),
                         "examples": examples}
    if cross:
        report.warnings.append(
            f"{len(cross)} distinct inputs occur in more than one split "
            f"({report.duplicates['rows_involved']} rows): test data leaks into training. "
            "Pass --dedup leak to drop the later copies, or --dedup first to keep one row each.")


def _summarise(frame: pl.DataFrame, cols: ColumnMap, report: Report) -> None:
    for m in MODALITIES:
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
