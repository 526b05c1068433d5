"""Composition baselines: one vector per sequence, no weights, no GPU.

- ``kmer1`` ... ``kmer6`` (DNA, RNA): the frequency of every k-mer of A/C/G/T(U), read with
  stride 1 (4^k features); k-mers holding an N are not counted.
- ``codon_usage`` (DNA, RNA): the frequency of each of the 64 codons on the codon grid (frame 0,
  one codon per protein token); a partial codon or one with N is not counted.
- ``aa_composition`` (protein): the frequency of each of the 20 standard amino acids.
- ``dipeptide`` (protein): the frequency of each of the 400 pairs of neighbouring amino acids.

Frequencies (counts over the k-mers counted) rather than counts, so a long sequence stays within
float16 and is comparable to a short one; TF-IDF weighting, which must be fitted on the training
split only, is the probe's job (``biofuse fit --head ridge --ridge-tfidf``), not the encoder's.
The cache stores one token per sequence (``nt_per_token`` 0: not on the codon grid), so these
encoders feed scikit-learn probes and the fusions that need no grid.
"""

from __future__ import annotations

from itertools import product

import numpy as np

from biofuse.modality import Modality
from biofuse.pipeline.encoders.base import EncoderInfo, EncoderRequest, WeightlessEncoder

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
_BASES = {Modality.DNA: "ACGT", Modality.RNA: "ACGU"}
KMER_SIZES = range(1, 7)

#: name -> (modalities, k, the alphabet per modality, stride, what it is)
_KINDS = {
    **{f"kmer{k}": ((Modality.DNA, Modality.RNA), k, _BASES, 1,
                    f"{k}-mer frequencies ({4 ** k} features)") for k in KMER_SIZES},
    "codon_usage": ((Modality.DNA, Modality.RNA), 3, _BASES, 3,
                    "codon usage on the codon grid (64 features)"),
    "aa_composition": ((Modality.PROTEIN,), 1, {Modality.PROTEIN: AMINO_ACIDS}, 1,
                       "amino-acid composition (20 features)"),
    "dipeptide": ((Modality.PROTEIN,), 2, {Modality.PROTEIN: AMINO_ACIDS}, 1,
                  "dipeptide composition (400 features)"),
}

INFOS = [EncoderInfo(name=name, modality=m, family="composition", source="builtin",
                     dim=len(alphabets[m]) ** k, n_layers=0, nt_per_token=0, context=1 << 30,
                     description=f"{what} of the {m}, one vector per sequence, no weights")
         for name, (modalities, k, alphabets, _, what) in _KINDS.items() for m in modalities]


class CompositionEncoder(WeightlessEncoder):
    """Frequencies of the words of length k of a sequence (k-mers, codons, residues, pairs)."""

    #: one vector per sequence, not one per token (extract stores a single row for each)
    per_sequence = True

    def __init__(self, request: EncoderRequest, info: EncoderInfo):
        self.request, self.info = request, info
        _, self.k, alphabets, self.stride, _ = _KINDS[info.name]
        alphabet = alphabets[info.modality]
        self._index = {"".join(w): i for i, w in enumerate(product(alphabet, repeat=self.k))}
        self.tokenizer_settings = {"alphabet": alphabet, "k": self.k, "stride": self.stride,
                                   "value": "frequency"}

    def tokenize(self, sequence: str) -> list[int]:
        """The index of every word counted (words with other letters are skipped)."""
        index, k = self._index, self.k
        words = (sequence[i:i + k] for i in range(0, len(sequence) - k + 1, self.stride))
        return [index[w] for w in words if w in index]

    def forward(self, batch: list[list[int]]) -> list[np.ndarray]:
        out = []
        for ids in batch:
            counts = np.bincount(np.asarray(ids, dtype=np.int64),
                                 minlength=self.info.dim).astype(np.float32)
            out.append((counts / max(len(ids), 1))[None, :])  # [1, dim]
        return out
