"""IsoFormer's Table 4 aggregation ablations built on a Perceiver Resampler (Alayrac et al. 2022,
Flamingo): a fixed number of learned latent tokens that, layer after layer, attend to the input
tokens and themselves (pre-norm attention + feed-forward, residual), so a sequence of any length
comes out as ``latents`` tokens.

[perceiver_xattn] "Perceiver Resampler + cross-attention": each modality, projected to the
shared width, is resampled to its own latents; IsoFormer's cross-attention aggregation then
runs over those short streams (isoformer.py), and their concatenation is the fused sequence.

[perceiver] "linear projection + Perceiver Resampler": each modality is projected to the shared
width and tagged with a learned modality embedding; one resampler reads all of them at once,
and its latents are the fused sequence.

IsoFormer reports Spearman 0.69 for both on its expression task (Table 4), against 0.72 for the
1-D C-Abstractor (cabstractor.py) and 0.71 for its own cross-attention (Table 8). A row without
any token of a modality gives that modality no latents (perceiver_xattn) or nothing to read
(perceiver).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from biofuse.fusion.base import AttentionOptions, Fusion, FusionOutput, TokenOptions, attend, compact
from biofuse.fusion.isoformer import cross_aggregate, cross_blocks
from biofuse.options import option


@dataclass(frozen=True, kw_only=True)
class ResamplerOptions(AttentionOptions, TokenOptions):
    latents: int = option(64, "Latent tokens the resampler returns (Flamingo's 64).", min=1,
                          max=4096)
    depth: int = option(2, "Resampler layers (each: latents attend to inputs and latents, "
                        "then a feed-forward block).", min=1, max=24)
    wide_heads = 8  # IsoFormer's


@dataclass(frozen=True, kw_only=True)
class PerceiverOptions(ResamplerOptions):
    prefix = "perceiver-"


@dataclass(frozen=True, kw_only=True)
class PerceiverXattnOptions(ResamplerOptions):
    prefix = "perceiver-xattn-"


class PerceiverResampler(nn.Module):
    """x [B, T, dim] with valid [B, T] -> [B, latents, dim]."""

    def __init__(self, dim: int, latents: int, depth: int, heads: int, dropout: float):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(latents, dim) * dim ** -0.5)
        self.layers = nn.ModuleList(nn.ModuleDict({
            "norm_x": nn.LayerNorm(dim), "norm_q": nn.LayerNorm(dim),
            "attn": nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True),
            "ff": nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.GELU(),
                                nn.Linear(4 * dim, dim))}) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        q = self.latents[None].expand(b, -1, -1)
        # the latents are always among the keys, so no row attends to nothing
        ignore = torch.cat([~valid, valid.new_zeros((b, q.shape[1]))], dim=1)
        for layer in self.layers:
            latent = layer["norm_q"](q)
            keys = torch.cat([layer["norm_x"](x), latent], dim=1)
            att = attend(layer["attn"], latent, keys, ignore)
            q = q + att
            q = q + layer["ff"](q)
        return self.norm(q)


def _resampler(o: ResamplerOptions) -> PerceiverResampler:
    return PerceiverResampler(o.dim, o.latents, o.depth, o.heads, o.dropout)


class PerceiverXattnFusion(Fusion):
    Options = PerceiverXattnOptions
    aligned = False
    lr = 1e-4  # IsoFormer's post-norm cross-attention follows the resampler

    def __init__(self, dims: dict[str, int], options: PerceiverXattnOptions | None = None):
        super().__init__(dims, options)
        o = self.options
        dim = o.dim
        self.proj = nn.ModuleDict({m: nn.Linear(dims[m], dim) for m in self.modalities})
        self.resample = nn.ModuleDict({m: _resampler(o) for m in self.modalities})
        self.cross, self.norm = cross_blocks(self.modalities, dim, o.heads, o.dropout)
        self.out_dim = dim

    def forward(self, feats, masks, present):
        valid = {m: masks[m] & present[m][:, None] for m in self.modalities}
        has = {m: valid[m].any(1) for m in self.modalities}  # [B]
        latent_valid = {m: has[m][:, None].expand(-1, self.options.latents)
                        for m in self.modalities}
        h = {m: self.resample[m](self.proj[m](feats[m]), valid[m]) * has[m][:, None, None]
             for m in self.modalities}
        out = cross_aggregate(self.cross, self.norm, h, latent_valid)
        return FusionOutput(*compact(torch.cat([out[m] for m in self.modalities], dim=1),
                                     torch.cat([latent_valid[m] for m in self.modalities], 1)))


class PerceiverFusion(Fusion):
    Options = PerceiverOptions
    aligned = False
    lr = 1e-4

    def __init__(self, dims: dict[str, int], options: PerceiverOptions | None = None):
        super().__init__(dims, options)
        o = self.options
        dim = o.dim
        self.proj = nn.ModuleDict({m: nn.Linear(dims[m], dim) for m in self.modalities})
        self.kind = nn.ParameterDict({m: nn.Parameter(torch.zeros(dim))
                                      for m in self.modalities})
        self.resample = _resampler(o)
        self.out_dim = dim

    def forward(self, feats, masks, present):
        valid = {m: masks[m] & present[m][:, None] for m in self.modalities}
        x = torch.cat([(self.proj[m](feats[m]) + self.kind[m]) * valid[m][..., None]
                       for m in self.modalities], dim=1)
        valid_all = torch.cat([valid[m] for m in self.modalities], dim=1)
        fused = self.resample(x, valid_all)  # [B, latents, dim]
        mask = valid_all.any(1)[:, None].expand(-1, fused.shape[1])
        return FusionOutput(fused * mask[..., None], mask)
