"""[mlp] Mean-pool over valid positions, then an MLP (the RNA-FM baseline of the poster)."""

from __future__ import annotations

from torch import nn

from biofuse.heads.base import Head, masked_mean


class MLPHead(Head):
    def __init__(self, in_dim: int, n_outputs: int, *, hidden: int = 256, dropout: float = 0.2):
        super().__init__(in_dim, n_outputs)
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, n_outputs))

    def forward(self, x, mask):
        return self.net(masked_mean(x, mask))
