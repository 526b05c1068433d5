"""The sequence columns of a table: cleaned, put on the codon grid, and derived across the dogma.

Every modality is cleaned the same way (whitespace, case, IUPAC codes; the alphabet checked), the
mRNA is put on the codon grid by the ORF policy, and what can be derived is derived (DNA from the
mRNA, the protein by translation, one token per codon). A row whose sequences cannot be used is
dropped with its reason; what was fixed on the way is counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import polars as pl

from biofuse.errors import OrfError, SequenceError
from biofuse.modality import Modality
from biofuse.pipeline.data import dogma
from biofuse.pipeline.data.columns import ColumnMap
from biofuse.pipeline.data.validation import Drop

#: the sequence columns of a dataset frame, one per modality (``Modality.column``), in the order
#: of the frame (which enters the dataset hash)
RNA, DNA, PROTEIN = Modality.RNA.column, Modality.DNA.column, Modality.PROTEIN.column
COLUMNS = (RNA, DNA, PROTEIN)


@dataclass
class SequenceColumns:
    """Per modality column, one cleaned sequence (or None) per table row; what was fixed (rows
    per fix), notes on the codon grid, and the rows dropped."""

    values: dict[str, list[str | None]]
    fixes: dict[str, int] = field(default_factory=dict)
    coding_notes: dict[str, int] = field(default_factory=dict)
    drops: list[Drop] = field(default_factory=list)


def sequence_column_role(table: pl.DataFrame, cols: ColumnMap) -> tuple[ColumnMap, str | None]:
    """A generic 'sequence' column holding amino acids is read as the protein column; returns the
    columns and the warning that says so (None when nothing changed)."""
    if cols.sequence is None or cols.protein is not None:
        return cols, None
    sample = "".join(s for s in table[cols.sequence].cast(pl.String).head(1000).to_list() if s)
    sample = dogma.strip_whitespace(sample).upper()
    # Nucleotide tables are ~100% ACGTUN even with a few bad rows; proteins are ~25%.
    share = sum(sample.count(c) for c in "ACGTUN") / max(len(sample), 1)
    if sample and share < 0.75:
        return replace(cols, sequence=None, protein=cols.sequence), (
            f"Column {cols.sequence!r} holds amino acids (only {share:.0%} of its letters are "
            "A/C/G/T/U/N); it is read as protein. Pass --protein-col to say so explicitly.")
    return cols, None


def read_sequences(table: pl.DataFrame, cols: ColumnMap, orf: str,
                   genetic_code: int) -> SequenceColumns:
    """Clean every modality, apply the ORF policy, derive what can be derived."""
    n = table.height
    raw = {m: (table[c].cast(pl.String).to_list() if c else [None] * n)
           for m, c in ((RNA, cols.sequence), (DNA, cols.dna), (PROTEIN, cols.protein))}
    out = SequenceColumns({m: [None] * n for m in COLUMNS})
    fixes: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    for i in range(n):
        try:
            values = {m: _clean(m, raw[m][i], fixes) for m in COLUMNS}
        except SequenceError as exc:
            out.drops.append(Drop(i, "invalid character", exc.problem))
            continue
        mrna, dna, protein = values[RNA], values[DNA], values[PROTEIN]
        if mrna:
            try:
                view = dogma.apply_orf_policy(mrna, orf, genetic_code)
            except OrfError as exc:
                out.drops.append(Drop(i, f"{orf}: {exc.reason}",
                                      f"length {len(mrna)}, starts {mrna[:6]}"))
                continue
            _coding_notes(view, notes, genetic_code)
            mrna = view.mrna
            if protein is None:
                protein = view.protein
            elif len(protein) != view.n_codons:
                notes["given protein length differs from the codon grid"] += 1
            if dna is None:
                dna = dogma.rna_to_dna(mrna)
        if not (mrna or dna or protein):
            out.drops.append(Drop(i, "empty sequence"))
            continue
        out.values[RNA][i], out.values[DNA][i], out.values[PROTEIN][i] = mrna, dna, protein
    out.fixes, out.coding_notes = dict(fixes), dict(notes)
    return out


def _clean(column: str, value: str | None, fixes: Counter[str]) -> str | None:
    if value is None:
        return None
    stripped = dogma.strip_whitespace(value)
    if not stripped:
        return None
    if stripped != value:
        fixes["whitespace removed"] += 1
    if stripped != stripped.upper():
        fixes["lower case upper-cased"] += 1
    if column == PROTEIN:
        return dogma.normalise_protein(stripped)
    seq = dogma.normalise_nucleotides(stripped)
    if "T" in stripped.upper() and column == RNA:
        fixes["DNA alphabet (T) read as mRNA"] += 1
    if seq.count("N") > stripped.upper().count("N"):
        fixes["IUPAC ambiguity codes stored as N"] += 1
    return dogma.rna_to_dna(seq) if column == DNA else seq


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
