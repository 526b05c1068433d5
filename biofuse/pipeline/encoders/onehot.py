"""One-hot baselines: no weights.

``onehot`` (the "Bridging" paper's): protein: 20 amino acids + X (any other letter) + '*' (stop)
= 22 features, one token per codon; RNA: A, C, G, U, N = 5 features, one token per nucleotide;
DNA: A, C, G, T, N likewise.

``onehot_codon`` (CodonBERT's strongest plain baseline, "TextCNN on codons"): RNA or DNA, one
token per codon, 64 codons + 1 unknown (a partial codon or one with N) = 65 features. Unlike
nucleotide one-hot averaged over a codon, it keeps the codon's identity (AUG and GAU differ),
and it sits on the protein grid without pooling.
"""

from __future__ import annotations

from itertools import product

import numpy as np

from biofuse.modality import Modality
from biofuse.pipeline.encoders.base import EncoderInfo, EncoderRequest, WeightlessEncoder

ALPHABETS = {Modality.PROTEIN: "ACDEFGHIKLMNPQRSTVWYX*", Modality.RNA: "ACGUN",
             Modality.DNA: "ACGTN"}
_UNKNOWN = {Modality.PROTEIN: "X", Modality.RNA: "N", Modality.DNA: "N"}

INFOS = {m: EncoderInfo(name="onehot", modality=m, family="onehot", source="builtin",
                        dim=len(a), n_layers=0, nt_per_token=3 if m == Modality.PROTEIN else 1,
                        context=1 << 30,
                        description=f"one-hot {m} baseline ({len(a)} features), no weights")
         for m, a in ALPHABETS.items()}


class OneHotEncoder(WeightlessEncoder):
    def __init__(self, request: EncoderRequest):
        self.request = request
        self.info = INFOS[request.modality]
        alphabet = ALPHABETS[request.modality]
        self._index = {c: i for i, c in enumerate(alphabet)}
        self._unknown = self._index[_UNKNOWN[request.modality]]
        self.tokenizer_settings = {"alphabet": alphabet}

    def tokenize(self, sequence: str) -> list[int]:
        return [self._index.get(c, self._unknown) for c in sequence]

    def forward(self, batch: list[list[int]]) -> list[np.ndarray]:
        eye = np.eye(self.info.dim, dtype=np.float32)
        return [eye[np.asarray(ids, dtype=np.int64)] for ids in batch]


CODONS = {m: ["".join(c) for c in product(bases, repeat=3)]
          for m, bases in ((Modality.RNA, "ACGU"), (Modality.DNA, "ACGT"))}
CODON_INFOS = {m: EncoderInfo(name="onehot_codon", modality=m, family="onehot_codon",
                              source="builtin", dim=len(CODONS[m]) + 1, n_layers=0,
                              nt_per_token=3, context=1 << 30,
                              description=f"one-hot codons of the {m} (64 + unknown), no weights")
               for m in CODONS}


class CodonOneHotEncoder(OneHotEncoder):
    """One token per codon from the first base; the trailing partial codon is 'unknown'."""

    def __init__(self, request: EncoderRequest):
        self.request = request
        self.info = CODON_INFOS[request.modality]
        codons = CODONS[request.modality]
        self._index = {c: i for i, c in enumerate(codons)}
        self._unknown = len(codons)
        self.tokenizer_settings = {"codons": "".join(codons), "frame": 0, "unknown": "last"}

    def tokenize(self, sequence: str) -> list[int]:
        return [self._index.get(sequence[i:i + 3], self._unknown)
                for i in range(0, len(sequence), 3)]
