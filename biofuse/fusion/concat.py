"""[concat] BioLangFusion's codon-level concatenation: an MLP shrinks the DNA embedding, then
[MLP(DNA) | RNA | protein] at every codon. An absent modality contributes zeros.

The MLP's width defaults to BioLangFusion's 128 only for DNA embeddings at least that wide; a
narrower one keeps its width (one-hot DNA's 5 dims widened to 128 made concat lose to the RNA
model alone on a planted-signal table, tests/test_fusion_quality.py)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from biofuse.fusion.base import Fusion, FusionOutput
from biofuse.modality import Modality
from biofuse.options import check, option

#: the DNA MLP's width unless the embedding is narrower (BioLangFusion's)
DNA_DIM = 128


@dataclass(frozen=True, kw_only=True)
class ConcatOptions:
    prefix = "concat-"
    dna_dim: int | None = option(
        None, "Width the DNA embedding is shrunk to by its MLP. Default: 128 (BioLangFusion's, "
        "for Nucleotide Transformer's 512-2560 dims), or the embedding's own width if it is "
        "narrower: widening a narrow one (one-hot's 5) only adds noise features.", min=1)

    def __post_init__(self) -> None:
        check(self, self.prefix)

    def resolved(self, dims: dict[str, int]) -> ConcatOptions:
        return replace(self, dna_dim=self.dna_dim if self.dna_dim is not None
                       else min(DNA_DIM, dims.get(Modality.DNA, DNA_DIM)))


class ConcatFusion(Fusion):
    Options = ConcatOptions

    def __init__(self, dims: dict[str, int], options: ConcatOptions | None = None):
        super().__init__(dims, options)
        dna, dna_dim = Modality.DNA, self.options.dna_dim
        self.dna_mlp = (nn.Sequential(nn.Linear(dims[dna], dna_dim), nn.ReLU(),
                                      nn.Linear(dna_dim, dna_dim)) if dna in dims else None)
        self.out_dim = sum(dna_dim if m == dna else dims[m] for m in self.modalities)

    def forward(self, feats, masks, present):
        parts = []
        for m in self.modalities:
            x = self.dna_mlp(feats[m]) if m == Modality.DNA else feats[m]  # [B, G, D_m]
            parts.append(x * (masks[m] & present[m][:, None])[..., None])
        mask = torch.stack([masks[m] & present[m][:, None] for m in self.modalities]).any(0)
        return FusionOutput(torch.cat(parts, dim=-1), mask)
