"""Heads: [B, T, D] + mask [B, T] -> [B, n_outputs]. Padding never changes an output."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True, kw_only=True)
class NoOptions:
    """A head without options."""

    prefix = ""


class Head(nn.Module):
    """``forward(x, mask)``: x [B, T, D] is exactly zero at padded positions (every fusion
    method guarantees it, so heads need not re-mask their input); mask [B, T]."""

    #: the head's options (frozen dataclass of ``biofuse.options.option`` fields)
    Options: type = NoOptions

    def __init__(self, in_dim: int, n_outputs: int):
        super().__init__()
        self.in_dim, self.n_outputs = in_dim, n_outputs


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over valid positions; zeros for a row without any."""
    neg = torch.finfo(x.dtype).min
    out = x.masked_fill(~mask[..., None], neg).max(1).values
    return out.masked_fill(~mask.any(1)[:, None], 0.0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)[..., None]
    return (x * m).sum(1) / m.sum(1).clamp(min=1)
