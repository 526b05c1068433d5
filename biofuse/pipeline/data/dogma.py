"""The central dogma as biofuse uses it: alphabets, transcription, translation, ORF policies.

The codon grid is the spine of the project: **one protein token per codon**, so that the protein,
the codon-pooled RNA and the upsampled DNA share one grid and align exactly. An ORF policy decides
which nucleotides form the grid and how odd codons (stops, partial codons, codons with N) become
protein tokens; the policy name is recorded with every result.

Conventions: mRNA is held in the RNA alphabet ``ACGUN``; DNA is the same string with T for U.
Protein tokens are one-letter amino acids, ``*`` for a stop codon and ``X`` for a codon whose
amino acid is unknown (ambiguous bases, or a partial trailing codon).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache

from biofuse.errors import ConfigError, OrfError, SequenceError

RNA_BASES = "ACGU"
#: IUPAC ambiguity codes; biofuse stores each of them as N.
IUPAC_AMBIGUOUS = frozenset("RYSWKMBDHVN")
#: One-letter amino acids accepted in a protein column: the 20, the rarer U/O, the ambiguous B/Z/J/X.
PROTEIN_LETTERS = frozenset("ACDEFGHIKLMNPQRSTVWYUOBZJX")
STOP = "*"
UNKNOWN_AA = "X"

# NCBI genetic codes, in NCBI's own layout: codons in TCAG order (first base slowest).
_NCBI_TABLES: dict[int, tuple[str, str, str]] = {
    1: ("Standard",
        "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG",
        "---M------**--*----M---------------M----------------------------"),
    2: ("Vertebrate Mitochondrial",
        "FFLLSSSSYY**CCWWLLLLPPPPHHQQRRRRIIMMTTTTNNKKSS**VVVVAAAADDEEGGGG",
        "----------**--------------------MMMM----------**---M------------"),
    4: ("Mold, Protozoan, Coelenterate Mitochondrial; Mycoplasma/Spiroplasma",
        "FFLLSSSSYY**CCWWLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG",
        "--MM------**-------M------------MMMM---------------M------------"),
    11: ("Bacterial, Archaeal and Plant Plastid",
         "FFLLSSSSYY**CC*WLLLLPPPPHHQQRRRRIIIMTTTTNNKKSSRRVVVVAAAADDEEGGGG",
         "---M------**--*----M------------MMMM---------------M------------"),
}
GENETIC_CODES = tuple(sorted(_NCBI_TABLES))

ORF_POLICIES = ("cds", "strict", "longest-orf")
DEFAULT_ORF_POLICY = "cds"
ORF_POLICY_HELP = {
    "cds": "translate from the first base; every codon becomes one token (stop '*', unknown or "
           "partial 'X'); nothing is dropped. Fits fragments such as the CoV-Vac sequences.",
    "strict": "keep only clean coding sequences: length a multiple of 3, a start codon first, a "
              "stop codon last, only A/C/G/U/N; other rows are dropped with their reason.",
    "longest-orf": "cut each sequence to its longest start..stop open reading frame in the three "
                   "forward frames; rows without one are dropped.",
}


@dataclass(frozen=True)
class CodeTable:
    """A genetic code: codon (RNA alphabet, may contain N) -> one-letter token."""

    table_id: int
    name: str
    codons: dict[str, str]
    starts: frozenset[str]
    stops: frozenset[str]


@cache
def genetic_code(table_id: int = 1) -> CodeTable:
    """Return NCBI genetic code ``table_id``, extended to codons with N.

    A codon with N translates to the amino acid all its expansions agree on (``GCN`` is always
    alanine), else to ``X``.
    """
    if table_id not in _NCBI_TABLES:
        raise ConfigError(
            f"Genetic code {table_id} is not known to biofuse.",
            f"Use one of the NCBI table ids {', '.join(map(str, GENETIC_CODES))}.")
    name, aas, starts = _NCBI_TABLES[table_id]
    exact = {}
    start_set = set()
    for i, triple in enumerate(itertools.product("UCAG", repeat=3)):
        codon = "".join(triple)
        exact[codon] = aas[i]
        if starts[i] == "M":
            start_set.add(codon)
    codons = dict(exact)
    for triple in itertools.product("ACGUN", repeat=3):
        codon = "".join(triple)
        if "N" not in codon:
            continue
        options = {exact["".join(c)] for c in itertools.product(
            *[RNA_BASES if b == "N" else b for b in codon])}
        codons[codon] = options.pop() if len(options) == 1 else UNKNOWN_AA
    stops = frozenset(c for c, aa in exact.items() if aa == STOP)
    return CodeTable(table_id, name, codons, frozenset(start_set), stops)


# --------------------------------------------------------------------------------------------
# Normalisation

_WHITESPACE = str.maketrans("", "", " \t\r\n\v\f")
_TO_RNA = str.maketrans({"T": "U", **{c: "N" for c in IUPAC_AMBIGUOUS}})


def strip_whitespace(seq: str) -> str:
    return seq.translate(_WHITESPACE)


def normalise_nucleotides(seq: str) -> str:
    """Upper-case, strip whitespace, map T to U and IUPAC ambiguity codes to N.

    Raises :class:`SequenceError` naming the first character outside ACGTU + IUPAC codes.
    """
    s = strip_whitespace(seq).upper().translate(_TO_RNA)
    bad = _first_outside(s, "ACGUN")
    if bad >= 0:
        raise SequenceError(
            f"invalid nucleotide {s[bad]!r} at position {bad + 1}",
            "Nucleotide sequences may hold A, C, G, T or U, and IUPAC ambiguity codes (stored as N).",
            position=bad, char=s[bad])
    return s


def normalise_protein(seq: str) -> str:
    """Upper-case, strip whitespace, drop one terminal '*'; refuse non-amino-acid characters."""
    s = strip_whitespace(seq).upper()
    if s.endswith(STOP):
        s = s[:-1]
    bad = _first_outside(s, PROTEIN_LETTERS | {STOP})
    if bad >= 0:
        raise SequenceError(
            f"invalid amino acid {s[bad]!r} at position {bad + 1}",
            "Protein sequences use one-letter amino-acid codes (X for unknown, * for stop).",
            position=bad, char=s[bad])
    return s


def _first_outside(s: str, allowed: str | frozenset[str] | set[str]) -> int:
    allowed = set(allowed)
    if set(s) <= allowed:
        return -1
    return next(i for i, c in enumerate(s) if c not in allowed)


# --------------------------------------------------------------------------------------------
# Transcription and translation

def rna_to_dna(rna: str) -> str:
    return rna.replace("U", "T")


def dna_to_rna(dna: str) -> str:
    return dna.replace("T", "U")


def n_codons(n_nucleotides: int) -> int:
    """Length of the codon grid for ``n_nucleotides`` bases: a partial trailing codon counts."""
    return -(-n_nucleotides // 3)


def translate(rna: str, table_id: int = 1, *, start_as_m: bool = False) -> str:
    """Translate codon by codon from the first base: exactly one token per codon.

    A partial trailing codon becomes ``X``; stops become ``*``. With ``start_as_m``, an initial
    alternative start codon (e.g. GUG in table 11) is read as methionine, as ribosomes do.
    """
    code = genetic_code(table_id)
    table = code.codons
    out = [table.get(rna[i:i + 3], UNKNOWN_AA) for i in range(0, len(rna), 3)]
    if start_as_m and out and rna[:3] in code.starts:
        out[0] = "M"
    return "".join(out)


@dataclass(frozen=True)
class CodingView:
    """The part of an mRNA that forms the codon grid, and its protein (one token per codon)."""

    mrna: str
    protein: str
    start: int  # 0-based offset of the grid in the input sequence

    @property
    def n_codons(self) -> int:
        return len(self.protein)


def apply_orf_policy(rna: str, policy: str = DEFAULT_ORF_POLICY, table_id: int = 1) -> CodingView:
    """Put a normalised mRNA on the codon grid under ``policy``.

    Raises :class:`OrfError` with a short reason when the sequence fails the policy.
    """
    if policy == "cds":
        if not rna:
            raise OrfError("empty sequence")
        return CodingView(rna, translate(rna, table_id), 0)
    code = genetic_code(table_id)
    if policy == "strict":
        return _strict(rna, code)
    if policy == "longest-orf":
        return _longest_orf(rna, code)
    raise ConfigError(f"Unknown ORF policy {policy!r}.",
                      f"Use one of: {', '.join(ORF_POLICIES)}.")


def _strict(rna: str, code: CodeTable) -> CodingView:
    if len(rna) == 0:
        raise OrfError("empty sequence")
    if len(rna) % 3:
        raise OrfError("length not a multiple of 3")
    if rna[:3] not in code.starts or (code.table_id == 1 and rna[:3] != "AUG"):
        raise OrfError("no start codon at the first base")
    if rna[-3:] not in code.stops:
        raise OrfError("no stop codon at the end")
    return CodingView(rna, translate(rna, code.table_id, start_as_m=True), 0)


def _longest_orf(rna: str, code: CodeTable) -> CodingView:
    """Longest start..stop ORF (stop included) over the three forward frames; ties: leftmost."""
    starts = {"AUG"} if code.table_id == 1 else code.starts
    best: tuple[int, int] | None = None  # (start, end) with end exclusive
    for frame in range(3):
        open_at = -1
        for i in range(frame, len(rna) - 2, 3):
            codon = rna[i:i + 3]
            if open_at < 0 and codon in starts:
                open_at = i
            elif open_at >= 0 and codon in code.stops:
                span = (open_at, i + 3)
                if best is None or (span[1] - span[0], -span[0]) > (best[1] - best[0], -best[0]):
                    best = span
                open_at = -1
    if best is None:
        raise OrfError("no open reading frame (start..stop) in the three forward frames")
    orf = rna[best[0]:best[1]]
    return CodingView(orf, translate(orf, code.table_id, start_as_m=True), best[0])
