"""The three molecular modalities biofuse fuses, and everything that is fixed per modality.

``Modality`` is a ``StrEnum``, so ``Modality.RNA == "rna"`` and it serialises to JSON as ``"rna"``:
configuration files, fingerprints and run directories hold the plain names. Every other module
asks this one for a modality's dataset column, token unit or default encoder.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from biofuse.errors import ConfigError


class Modality(StrEnum):  # str() and f-strings give "rna", not "Modality.RNA"
    DNA = "dna"
    RNA = "rna"
    PROTEIN = "protein"

    @property
    def column(self) -> str:
        """The dataset column holding this modality's sequences (RNA lives in ``mrna``)."""
        return _COLUMN[self]

    @property
    def token_unit(self) -> str:
        """What one position of the dataset's sequence is: a nucleotide or a codon (protein)."""
        return "codon" if self is Modality.PROTEIN else "nucleotide"

    @property
    def default_encoder(self) -> str:
        """The encoder used when none is named (BioLangFusion's choices)."""
        return _DEFAULT_ENCODER[self]

    @classmethod
    def parse(cls, value: str | Modality) -> Modality:
        """``value`` as a Modality, or a :class:`ConfigError` listing the choices."""
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ConfigError(f"Unknown modality {value!r}.",
                              f"Use one of: {', '.join(NAMES)}.") from None


_COLUMN = {Modality.DNA: "dna", Modality.RNA: "mrna", Modality.PROTEIN: "protein"}
_DEFAULT_ENCODER = {Modality.DNA: "nt_v2_100m", Modality.RNA: "rnafm",
                    Modality.PROTEIN: "esm2_t6_8M"}
#: every modality, in the order biofuse lists them
ALL: tuple[Modality, ...] = (Modality.DNA, Modality.RNA, Modality.PROTEIN)
NAMES: tuple[str, ...] = tuple(m.value for m in ALL)


def parse_modalities(values: str | Iterable[str | Modality]) -> tuple[Modality, ...]:
    """A comma-separated string or an iterable of names -> distinct modalities, in given order."""
    items = values.split(",") if isinstance(values, str) else list(values)
    out = tuple(Modality.parse(v) for v in items if str(v).strip())
    if not out or len(set(out)) != len(out):
        raise ConfigError(f"{','.join(map(str, items))!r} is not a set of distinct modalities.",
                          f"For example {','.join(NAMES)}.")
    return out
