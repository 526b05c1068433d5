"""[mlp] Mean-pool over valid positions, then an MLP (the RNA-FM baseline of the poster)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from biofuse.heads.base import Head, masked_mean
from biofuse.options import check, option


@dataclass(frozen=True, kw_only=True)
class MLPOptions:
    prefix = "mlp-"
    hidden: int = option(256, "Hidden width of the MLP.", min=1)
    dropout: float = option(0.2, "Dropout after the hidden layer.", min=0, max=0.95)

    def __post_init__(self) -> None:
        check(self, self.prefix)


class MLPHead(Head):
    Options = MLPOptions

    def __init__(self, in_dim: int, n_outputs: int, options: MLPOptions | None = None):
        super().__init__(in_dim, n_outputs, options)
        o = self.options
        self.net = nn.Sequential(nn.Linear(in_dim, o.hidden), nn.ReLU(), nn.Dropout(o.dropout),
                                 nn.Linear(o.hidden, n_outputs))

    def forward(self, x, mask):
        return self.net(masked_mean(x, mask))
