"""[cabstractor] IsoFormer's best aggregation ablation (Table 4, Spearman 0.72): a 1-D
C-Abstractor (Cha et al. 2024, Honeybee) per modality, its outputs concatenated along the
sequence axis.

    H = Linear_m(X_m)                                   projection to the shared width
    H = ResBlock^depth(H)                               1-D convolutions over the tokens
    H = adaptive average pool of the row's valid tokens to ``latents`` tokens
    H = ResBlock^depth(H);  out = Linear(H)             the readout

ResBlock: x + Conv1d(k=3)(GELU(LayerNorm(x))), twice inside (a pre-activation ResNet block;
LayerNorm over each token's features, so padding never enters a statistic). Convolutions see
zeros beyond a row's last valid token, so batch padding never changes a value. The pooling is
local, so unlike a resampler's latents each output token summarises one stretch of the
sequence, in order: the locality Honeybee argues for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from biofuse.fusion.base import Fusion, FusionOutput, TokenOptions, compact, shared_width
from biofuse.options import check, option


@dataclass(frozen=True, kw_only=True)
class CAbstractorOptions(TokenOptions):
    prefix = "cabstractor-"
    dim: int | None = option(None, "Shared width every modality is projected to. Default: the "
                             "widest input's width, at most 256.", min=1)
    latents: int = option(64, "Tokens each modality is pooled to.", min=1, max=4096)
    depth: int = option(2, "Residual blocks before and after the pooling.", min=1, max=24)

    def __post_init__(self) -> None:
        check(self, self.prefix)

    def resolved(self, dims: dict[str, int]) -> CAbstractorOptions:
        return replace(self, dim=shared_width(self.dim, dims))


class ResBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.ModuleList([nn.LayerNorm(dim), nn.LayerNorm(dim)])
        self.conv = nn.ModuleList([nn.Conv1d(dim, dim, 3, padding=1) for _ in range(2)])

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x [B, dim, T], valid [B, T]."""
        keep = valid[:, None, :].to(x.dtype)
        h = x
        for norm, conv in zip(self.norm, self.conv):
            h = conv(nn.functional.gelu(norm(h.transpose(1, 2)).transpose(1, 2)) * keep)
        return (x + h) * keep


def pool_matrix(lengths: torch.Tensor, width: int, out: int) -> torch.Tensor:
    """[B, out, width] averaging weights: output token i of a row with n valid tokens is the
    mean of its tokens floor(i n / out) .. ceil((i + 1) n / out) - 1 (adaptive average pooling
    of the valid part only; rows with n < out repeat tokens)."""
    i = torch.arange(out, device=lengths.device)[None, :, None]
    n = lengths[:, None, None]
    start = torch.div(i * n, out, rounding_mode="floor")
    end = torch.div((i + 1) * n + out - 1, out, rounding_mode="floor")
    pos = torch.arange(width, device=lengths.device)[None, None, :]
    inside = ((pos >= start) & (pos < end)).float()
    return inside / inside.sum(-1, keepdim=True).clamp(min=1)


class CAbstractor(nn.Module):
    def __init__(self, dim_in: int, dim: int, latents: int, depth: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim)
        self.before = nn.ModuleList(ResBlock(dim) for _ in range(depth))
        self.after = nn.ModuleList(ResBlock(dim) for _ in range(depth))
        self.readout = nn.Linear(dim, dim)
        self.latents = latents

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        h = self.proj(x).transpose(1, 2)  # [B, dim, T]
        for block in self.before:
            h = block(h, valid)
        weights = pool_matrix(valid.sum(1), h.shape[2], self.latents).to(h.dtype)
        h = torch.bmm(weights, h.transpose(1, 2)).transpose(1, 2)  # [B, dim, latents]
        every = valid.new_ones((h.shape[0], self.latents))
        for block in self.after:
            h = block(h, every)
        return self.readout(h.transpose(1, 2))  # [B, latents, dim]


class CAbstractorFusion(Fusion):
    Options = CAbstractorOptions
    aligned = False

    def __init__(self, dims: dict[str, int], options: CAbstractorOptions | None = None):
        super().__init__(dims, options)
        o = self.options
        dim = o.dim
        self.abstract = nn.ModuleDict({m: CAbstractor(dims[m], dim, o.latents, o.depth)
                                       for m in self.modalities})
        self.out_dim = dim

    def forward(self, feats, masks, present):
        out, valid = [], []
        for m in self.modalities:
            v = masks[m] & present[m][:, None]
            has = v.any(1)[:, None].expand(-1, self.options.latents)
            out.append(self.abstract[m](feats[m], v) * has[..., None])
            valid.append(has)
        return FusionOutput(*compact(torch.cat(out, dim=1), torch.cat(valid, dim=1)))
