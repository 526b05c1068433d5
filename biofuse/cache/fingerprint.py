"""Encoder fingerprints and sequence keys: what makes two embeddings the same embedding.

Two embeddings may be shared only if the same encoder computed them the same way from the same
input. The fingerprint names everything that changes the numbers: model id and weight revision
(or hash), layer, compute dtype, long-sequence policy, tokenizer settings, storage dtype and the
cache format version. Each fingerprint gets its own sub-store, so embeddings never mix. It also
records what a reader of the store needs to know (typed, not in a free-form dict): the modality,
the embedding dim, and how many nucleotides one stored token covers.

One dtype vocabulary everywhere in biofuse: ``fp32``, ``bf16``, ``fp16``. ``compute_dtype`` is the
precision the encoder ran in; ``storage_dtype`` the precision the store holds (fp16 or fp32).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

FORMAT_VERSION = 2
#: precisions an encoder can run in ("none": the output does not depend on it, e.g. one-hot)
COMPUTE_DTYPES = ("fp32", "bf16", "fp16")
STORAGE_DTYPES = ("fp16", "fp32")
#: the numpy (and Zarr) name of a storage dtype
NUMPY_DTYPE = {"fp16": "float16", "fp32": "float32"}


def sequence_key(sequence: str) -> str:
    """Key of an input sequence: the first 128 bits of SHA-256 of its exact text, as hex.

    Hash the string the encoder sees (after biofuse's normalisation, e.g. the translated protein),
    so the same sequence in two datasets is one entry.
    """
    return hashlib.sha256(sequence.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Fingerprint:
    """Everything that determines an encoder's output for a given input sequence, plus what a
    reader needs to use it (modality, dim, nucleotides per token, the encoder's CLI name)."""

    model_id: str
    revision: str = "unknown"
    layer: int = -1
    compute_dtype: str = "fp32"
    long_policy: str = "window"
    tokenizer: dict = field(default_factory=dict)
    storage_dtype: str = "fp16"
    modality: str = ""
    dim: int = 0
    nt_per_token: int = 0  # 3: one token per codon (protein), 1: per nucleotide, 6: 6-mers
    encoder: str = ""  # the registered name, model directory or hub id it was extracted with
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.storage_dtype not in STORAGE_DTYPES:
            raise ValueError(f"storage_dtype must be one of {STORAGE_DTYPES}")
        if self.compute_dtype not in (*COMPUTE_DTYPES, "none"):
            raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES} or 'none'")

    @property
    def numpy_dtype(self) -> str:
        return NUMPY_DTYPE[self.storage_dtype]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Fingerprint:
        return cls(**d)

    def canonical(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        """A readable, unique directory name: ``<model slug>-<16 hex of the fingerprint hash>``."""
        digest = hashlib.sha256(self.canonical().encode()).hexdigest()[:16]
        slug = "".join(c if c.isalnum() or c in "-_." else "_"
                       for c in self.model_id.rsplit("/", 1)[-1])[:40]
        return f"{slug}-{digest}"


def parse_long_policy(policy: str) -> tuple[str, int | None, int | None]:
    """A fingerprint's ``long_policy``: ("window", context, overlap) for
    "window:<context>:<overlap>", else (its name, None, None)."""
    name, *rest = str(policy).split(":")
    if name == "window" and len(rest) == 2 and all(r.isdigit() for r in rest):
        return name, int(rest[0]), int(rest[1])
    return name, None, None
