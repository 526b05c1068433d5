"""[xattn] BioLangFusion's cross-modal multi-head attention: each modality, projected to a
shared dim (tanh), queries the concatenation of all modalities along the sequence axis (4 heads,
fewer on inputs under 128 wide; attention dropout 0.1 in the paper, 0 by default here:
docs/fit.md) with residual and LayerNorm; the streams are concatenated, projected back to the
shared dim, the modality average is added as a residual, and a LayerNorm closes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from biofuse.fusion.base import AttentionOptions, Fusion, FusionOutput, attend


@dataclass(frozen=True, kw_only=True)
class XattnOptions(AttentionOptions):
    prefix = "xattn-"


class CrossModalAttention(Fusion):
    Options = XattnOptions
    #: post-norm attention under Adam at 1e-3 can collapse to predicting the mean from the first
    #: epoch, and the plateau schedule then decays the rate before it recovers (docs/fit.md)
    lr = 1e-4

    def __init__(self, dims: dict[str, int], options: XattnOptions | None = None):
        super().__init__(dims, options)
        dim, heads, dropout = self.options.dim, self.options.heads, self.options.dropout
        self.proj = nn.ModuleDict({m: nn.Linear(dims[m], dim) for m in self.modalities})
        self.attn = nn.ModuleDict({m: nn.MultiheadAttention(dim, heads, dropout=dropout,
                                                            batch_first=True)
                                   for m in self.modalities})
        self.norm = nn.ModuleDict({m: nn.LayerNorm(dim) for m in self.modalities})
        self.out = nn.Linear(dim * len(dims), dim)
        self.final = nn.LayerNorm(dim)
        self.out_dim = dim

    def forward(self, feats, masks, present):
        valid = {m: masks[m] & present[m][:, None] for m in self.modalities}
        h = {m: torch.tanh(self.proj[m](feats[m])) * valid[m][..., None] for m in self.modalities}
        context = torch.cat([h[m] for m in self.modalities], dim=1)  # [B, M*G, dim]
        ctx_valid = torch.cat([valid[m] for m in self.modalities], dim=1)
        # a row without any valid position attends to nothing; keep softmax finite there
        ignore = ~ctx_valid
        ignore[~ctx_valid.any(1), 0] = False
        streams = []
        for m in self.modalities:
            att = attend(self.attn[m], h[m], context, ignore)
            streams.append(self.norm[m](h[m] + att))  # [B, G, dim]
        mask = torch.stack(list(valid.values())).any(0)
        n = torch.stack([valid[m] for m in self.modalities]).sum(0).clamp(min=1)[..., None]
        average = sum(h.values()) / n
        fused = self.final(self.out(torch.cat(streams, dim=-1)) + average)
        return FusionOutput(fused * mask[..., None], mask)
