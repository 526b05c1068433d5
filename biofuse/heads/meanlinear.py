"""[meanlinear] IsoFormer's head: global average pool, one linear output per target (tissue)."""

from __future__ import annotations

from torch import nn

from biofuse.heads.base import Head, masked_mean


class MeanLinear(Head):
    def __init__(self, in_dim: int, n_outputs: int, options=None):
        super().__init__(in_dim, n_outputs, options)
        self.out = nn.Linear(in_dim, n_outputs)

    def forward(self, x, mask):
        return self.out(masked_mean(x, mask))
