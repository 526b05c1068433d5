"""[textcnn] Kim (2014): optional input projection, Conv1d with kernels 3/4/5, ReLU, global max
pool over valid windows only, concatenation, dropout 0.2, linear output. 100 channels per kernel
in the Bridging paper and for xattn; 1280 for BioLangFusion's MIL."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from biofuse.heads.base import Head, masked_max
from biofuse.options import check, option


@dataclass(frozen=True, kw_only=True)
class TextCNNOptions:
    prefix = "textcnn-"
    projection: int | None = option(None, "Project the fused features to this many dims first "
                                    "(640 in the Bridging paper).", flag="--projection", min=1)
    channels: int = option(100, "Channels per kernel (BioLangFusion used 1280 for mil).",
                           flag="--channels", min=1)
    kernels: tuple[int, ...] = option((3, 4, 5), "Kernel widths, comma-separated.")
    dropout: float = option(0.2, "Dropout before the output layer.", min=0, max=0.95)

    def __post_init__(self) -> None:
        check(self, self.prefix)
        if not self.kernels or any(int(k) < 1 for k in self.kernels):
            from biofuse.errors import ConfigError

            raise ConfigError(f"--textcnn-kernels {self.kernels} must be positive widths.",
                              "For example --textcnn-kernels 3,4,5.")


class TextCNN(Head):
    Options = TextCNNOptions

    def __init__(self, in_dim: int, n_outputs: int, options: TextCNNOptions | None = None):
        super().__init__(in_dim, n_outputs, options)
        o = self.options
        self.proj = nn.Linear(in_dim, o.projection) if o.projection else None
        width = o.projection or in_dim
        self.kernels = tuple(int(k) for k in o.kernels)
        self.convs = nn.ModuleList(nn.Conv1d(width, o.channels, k) for k in self.kernels)
        self.dropout = nn.Dropout(o.dropout)
        self.out = nn.Linear(o.channels * len(self.kernels), n_outputs)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            x = self.proj(x) * mask[..., None]  # padded positions back to exactly zero
        k_max = max(self.kernels)
        if x.shape[1] < k_max:  # room for one window of the widest kernel
            x = nn.functional.pad(x, (0, 0, 0, k_max - x.shape[1]))
        lengths = mask.sum(1)  # [B]
        xt = x.transpose(1, 2).contiguous()  # [B, D, T], one copy shared by every kernel
        pooled = []
        for k, conv in zip(self.kernels, self.convs):
            y = torch.relu(conv(xt)).transpose(1, 2)  # [B, T-k+1, C]
            # a window is valid when it lies inside the sequence (or is the first, if shorter)
            n_valid = (lengths - k + 1).clamp(min=1)
            valid = torch.arange(y.shape[1], device=y.device)[None, :] < n_valid[:, None]
            pooled.append(masked_max(y, valid & (lengths > 0)[:, None]))
        return self.out(self.dropout(torch.cat(pooled, dim=-1)))
