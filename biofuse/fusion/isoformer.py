"""[isoformer] IsoFormer's aggregation (Garau-Luis et al. 2024): every modality, projected to a
common dim, attends in turn to each other modality (cross-attention, 8 heads or fewer on inputs
under 256 wide, residual + norm), giving one multi-modal embedding per modality; their
concatenation along the sequence axis is the fused representation. No codon alignment
(IsoFormer's DNA, transcript and protein are not on one grid; Enformer's 128-bp bins enter as
they are). An absent modality contributes nothing: its cross-attention term is zeroed and its
own stream is masked out.

``cross_blocks`` and ``cross_aggregate`` are that block alone; IsoFormer's Table 4 ablations
(resampler.py) reuse it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from biofuse.fusion.base import AttentionOptions, Fusion, FusionOutput, TokenOptions, attend, compact


@dataclass(frozen=True, kw_only=True)
class IsoformerOptions(AttentionOptions, TokenOptions):
    prefix = "isoformer-"
    wide_heads = 8  # IsoFormer's


def cross_blocks(modalities: list[str], dim: int, heads: int, dropout: float
                 ) -> tuple[nn.ModuleDict, nn.ModuleDict]:
    """The attention and LayerNorm of every ordered pair of modalities ("q->k")."""
    pairs = [f"{q}->{k}" for q in modalities for k in modalities if q != k]
    return (nn.ModuleDict({p: nn.MultiheadAttention(dim, heads, dropout=dropout,
                                                    batch_first=True) for p in pairs}),
            nn.ModuleDict({p: nn.LayerNorm(dim) for p in pairs}))


def cross_aggregate(cross: nn.ModuleDict, norm: nn.ModuleDict, h: dict[str, torch.Tensor],
                    valid: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each modality's stream h[m] [B, T_m, dim] attends in turn to every other modality's
    (residual + LayerNorm after each); the updated streams, zero where invalid."""
    out = {}
    for q in h:
        x = h[q]
        for k in h:
            if k == q:
                continue
            ignore = ~valid[k]
            empty = ~valid[k].any(1)  # rows without modality k: zero its contribution
            ignore[empty, 0] = False
            att = attend(cross[f"{q}->{k}"], x, h[k], ignore)
            att = att * (~empty)[:, None, None]
            x = norm[f"{q}->{k}"](x + att)
        out[q] = x * valid[q][..., None]
    return out


class IsoFormerAggregation(Fusion):
    Options = IsoformerOptions
    aligned = False
    lr = 1e-4  # post-norm attention blocks, like xattn's (docs/fit.md)

    def __init__(self, dims: dict[str, int], options: IsoformerOptions | None = None):
        super().__init__(dims, options)
        dim, heads, dropout = self.options.dim, self.options.heads, self.options.dropout
        self.proj = nn.ModuleDict({m: nn.Linear(dims[m], dim) for m in self.modalities})
        self.cross, self.norm = cross_blocks(self.modalities, dim, heads, dropout)
        self.out_dim = dim

    def forward(self, feats, masks, present):
        valid = {m: masks[m] & present[m][:, None] for m in self.modalities}
        out = cross_aggregate(self.cross, self.norm,
                              {m: self.proj[m](feats[m]) for m in self.modalities}, valid)
        return FusionOutput(*compact(torch.cat([out[m] for m in self.modalities], dim=1),
                                     torch.cat([valid[m] for m in self.modalities], dim=1)))
