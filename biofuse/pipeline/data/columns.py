"""Which column of a user's table holds what: auto-detection with explicit overrides."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from biofuse.errors import ColumnError

# Names tried, case-insensitively, in order, when no column is named explicitly.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "sequence": ("mrna", "cds", "sequence", "seq", "rna", "transcript", "nucleotide_sequence"),
    "dna": ("dna", "dna_sequence", "genomic", "genomic_sequence"),
    "protein": ("protein", "protein_sequence", "aa_sequence", "aa_seq", "aa"),
    "label": ("label", "value", "target", "y", "labels", "score"),
    "split": ("split", "set", "subset", "partition"),
    "id": ("id", "name", "seq_id", "sequence_id", "identifier"),
    "group": ("group",),
}
FLAG = {"sequence": "--sequence-col", "dna": "--dna-col", "protein": "--protein-col",
        "label": "--label-col", "split": "--split-col", "id": "--id-col", "group": "--group-col"}


@dataclass(frozen=True)
class ColumnMap:
    """The resolved columns; ``None`` where the table has no such column."""

    sequence: str | None
    dna: str | None
    protein: str | None
    labels: tuple[str, ...]
    split: str | None
    id: str | None
    group: str | None
    detected: tuple[str, ...]  # roles that were auto-detected rather than named

    def used(self) -> set[str]:
        return {c for c in (self.sequence, self.dna, self.protein, self.split, self.id, self.group)
                if c} | set(self.labels)


def resolve_columns(columns: list[str], *, sequence: str | None = None, dna: str | None = None,
                    protein: str | None = None, labels: tuple[str, ...] = (),
                    split: str | None = None, id: str | None = None,
                    group: str | None = None) -> ColumnMap:
    """Resolve explicit names (which must exist) and auto-detect the rest."""
    explicit = {"sequence": sequence, "dna": dna, "protein": protein, "split": split, "id": id,
                "group": group}
    for role, name in explicit.items():
        if name is not None:
            _require(columns, name, role)
    for name in labels:
        _require(columns, name, "label")
    taken = {n for n in explicit.values() if n} | set(labels)
    detected = []
    out: dict[str, str | None] = {}
    for role, name in explicit.items():
        if name is None:
            name = _detect(columns, role, taken)
            if name is not None:
                detected.append(role)
                taken.add(name)
        out[role] = name
    label_cols = tuple(labels)
    if not label_cols:
        found = _detect(columns, "label", taken)
        if found is not None:
            label_cols = (found,)
            detected.append("label")
    if not (out["sequence"] or out["dna"] or out["protein"]):
        raise ColumnError(
            f"No sequence column found among the columns {_show(columns)}.",
            "Name it with --sequence-col (mRNA/CDS, T or U), --dna-col or --protein-col.")
    return ColumnMap(out["sequence"], out["dna"], out["protein"], label_cols, out["split"],
                     out["id"], out["group"], tuple(detected))


def _detect(columns: list[str], role: str, taken: set[str]) -> str | None:
    lower = {c.lower(): c for c in reversed(columns)}  # first column wins on a case clash
    for cand in CANDIDATES[role]:
        col = lower.get(cand)
        if col is not None and col not in taken:
            return col
    return None


def _require(columns: list[str], name: str, role: str) -> None:
    if name in columns:
        return
    close = difflib.get_close_matches(name, columns, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ColumnError(f"There is no column {name!r} (asked for by {FLAG[role]}).{hint}",
                      f"The table has the columns {_show(columns)}.")


def _show(columns: list[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:20])
    return shown + (f" and {len(columns) - 20} more" if len(columns) > 20 else "")
