"""Codon-level alignment: every modality onto the protein grid (one position per codon).

How a modality reaches the grid depends on how many nucleotides one of its tokens covers:
  3 (protein tokens)          identity
  1 (RNA-FM, one-hot RNA/DNA) mean over each 3 tokens (kernel 3, stride 3; last codon may be short)
  6 (Nucleotide Transformer)  learnable ConvTranspose1d(kernel 3, stride 2, padding 2), as in
                              BioLangFusion, then cropped or zero-padded to the grid
  more (Enformer's 128-bp, Borzoi's 32-bp bins)  each codon takes the bin that holds its first
                              nucleotide (a bin's vector repeats over its ~43 or ~11 codons)
Masks travel with every tensor: padded positions are zero and flagged False.
"""

from __future__ import annotations

import torch
from torch import nn


def codon_pool(x: torch.Tensor, mask: torch.Tensor, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over runs of ``k`` valid tokens. x: [B, T, D], mask: [B, T] -> [B, ceil(T/k), D]."""
    b, t, d = x.shape
    pad = (-t) % k
    x = nn.functional.pad(x * mask[..., None], (0, 0, 0, pad))
    m = nn.functional.pad(mask.to(x.dtype), (0, pad))
    sums = x.view(b, -1, k, d).sum(2)  # [B, G, D]
    counts = m.view(b, -1, k).sum(2)  # [B, G]
    return sums / counts.clamp(min=1)[..., None], counts > 0


def fit_to_grid(x: torch.Tensor, mask: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop or zero-pad the position axis to ``grid``."""
    t = x.shape[1]
    if t >= grid:
        return x[:, :grid], mask[:, :grid]
    return (nn.functional.pad(x, (0, 0, 0, grid - t)),
            nn.functional.pad(mask, (0, grid - t), value=False))


def bins_to_codons(x: torch.Tensor, mask: torch.Tensor, k: int, grid: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Bins of ``k`` nucleotides -> codon positions: codon j takes bin 3j // k.
    x: [B, T, D], mask: [B, T] -> [B, grid, D]; a codon past the row's last bin is masked."""
    b, t, d = x.shape
    index = torch.div(torch.arange(grid, device=x.device) * 3, k, rounding_mode="floor")
    inside = index < t
    index = index.clamp(max=max(t - 1, 0))
    out = x[:, index] if t else x.new_zeros((b, grid, d))
    keep = (mask[:, index] if t else mask.new_zeros((b, grid))) & inside[None, :]
    return out * keep[..., None], keep


class Upsample6mer(nn.Module):
    """6-mer tokens (2 codons each) -> codon positions: ConvTranspose1d(k=3, s=2, p=2).

    That convolution alone returns 2T-3 positions for T tokens, so the last codons of the
    longest row would depend on how much padding its batch has; two zero tokens appended to the
    (masked) input make it return 2T+1, cropped to 2T: every codon of every row is computed, and
    padding never changes a value.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.deconv = nn.ConvTranspose1d(dim, dim, kernel_size=3, stride=2, padding=2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = x.shape[1]
        x = nn.functional.pad(x * mask[..., None], (0, 0, 0, 2))  # [B, T+2, D]
        y = self.deconv(x.transpose(1, 2)).transpose(1, 2)[:, :2 * t]  # [B, 2T, D]
        up = mask.repeat_interleave(2, dim=1)
        return y * up[..., None], up


class Aligner(nn.Module):
    """Puts each modality on the codon grid according to its nucleotides per token."""

    def __init__(self, nt_per_token: dict[str, int], dims: dict[str, int]):
        super().__init__()
        self.nt_per_token = dict(nt_per_token)
        self.upsample = nn.ModuleDict({m: Upsample6mer(dims[m])
                                       for m, k in nt_per_token.items() if k == 6})
        for m, k in nt_per_token.items():
            if k not in (1, 3, 6) and k < 7:
                raise ValueError(f"cannot align {m}: {k} nucleotides per token")

    def forward(self, feats: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                grid: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """feats[m]: [B, T_m, D_m]; grid: [B] codons per row -> aligned [B, G, D_m], mask [B, G]."""
        g = int(grid.max())
        grid_mask = torch.arange(g, device=grid.device)[None, :] < grid[:, None]  # [B, G]
        out = {}
        for m, x in feats.items():
            k = self.nt_per_token[m]
            mask = masks[m]
            if k == 1:
                x, mask = codon_pool(x, mask)
            elif k == 6:
                x, mask = self.upsample[m](x, mask)
            elif k > 6:
                x, mask = bins_to_codons(x, mask, k, g)
            x, mask = fit_to_grid(x, mask, g)
            keep = mask & grid_mask
            out[m] = x * keep[..., None]
        return out, grid_mask
