"""Heads: [B, T, D] + mask [B, T] -> [B, n_outputs]. Padding never changes an output."""

from __future__ import annotations

import torch
from torch import nn

from biofuse.options import NoOptions


class Head(nn.Module):
    """``forward(x, mask)``: x [B, T, D] is exactly zero at padded positions (every fusion
    method guarantees it, so heads need not re-mask their input); mask [B, T].

    ``Head(in_dim, n_outputs, options)``: ``options`` an instance of the head's ``Options``
    (its defaults when left out); the defaults live there only."""

    #: the head's options (frozen dataclass of ``biofuse.options.option`` fields)
    Options: type = NoOptions
    #: trained with the network it sits on (probes.py's scikit-learn heads are "probe")
    kind = "network"

    def __init__(self, in_dim: int, n_outputs: int, options=None):
        super().__init__()
        self.in_dim, self.n_outputs = in_dim, n_outputs
        self.options = options if options is not None else self.Options()


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over valid positions; zeros for a row without any."""
    neg = torch.finfo(x.dtype).min
    out = x.masked_fill(~mask[..., None], neg).max(1).values
    return out.masked_fill(~mask.any(1)[:, None], 0.0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)[..., None]
    return (x * m).sum(1) / m.sum(1).clamp(min=1)
