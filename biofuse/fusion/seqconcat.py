"""[seqconcat] BioLangFusion's "vanilla concatenation" ablation: no codon alignment; every
modality is projected to a common dim and the sequences are concatenated along the sequence
axis, each keeping its own tokens."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from biofuse.fusion.base import Fusion, FusionOutput, TokenOptions, compact, shared_width
from biofuse.options import check, option


@dataclass(frozen=True, kw_only=True)
class SeqconcatOptions(TokenOptions):
    prefix = "seqconcat-"
    dim: int | None = option(None, "Shared width every modality is projected to. Default: the "
                             "widest input's width, at most 256.", min=1)

    def __post_init__(self) -> None:
        check(self, self.prefix)

    def resolved(self, dims: dict[str, int]) -> SeqconcatOptions:
        return replace(self, dim=shared_width(self.dim, dims))


class SequenceConcat(Fusion):
    Options = SeqconcatOptions
    aligned = False

    def __init__(self, dims: dict[str, int], options: SeqconcatOptions | None = None):
        super().__init__(dims, options)
        dim = self.options.dim
        self.proj = nn.ModuleDict({m: nn.Linear(dims[m], dim) for m in self.modalities})
        self.out_dim = dim

    def forward(self, feats, masks, present):
        valid = [masks[m] & present[m][:, None] for m in self.modalities]
        xs = [self.proj[m](feats[m]) * v[..., None] for m, v in zip(self.modalities, valid)]
        return FusionOutput(*compact(torch.cat(xs, dim=1), torch.cat(valid, dim=1)))
