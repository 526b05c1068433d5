"""[lstm] The Bridging paper's LSTM head: LSTM (hidden 640) over the valid positions only
(packed), max pool over them, dropout 0.2, linear output."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from biofuse.heads.base import Head, masked_max
from biofuse.options import check, option


@dataclass(frozen=True, kw_only=True)
class LSTMOptions:
    prefix = "lstm-"
    hidden: int = option(640, "LSTM hidden size (the Bridging paper: 640).", min=1)
    bidirectional: bool = option(False, "Run the LSTM in both directions.")
    dropout: float = option(0.2, "Dropout before the output layer.", min=0, max=0.95)

    def __post_init__(self) -> None:
        check(self, self.prefix)


class LSTMHead(Head):
    Options = LSTMOptions

    def __init__(self, in_dim: int, n_outputs: int, options: LSTMOptions | None = None):
        super().__init__(in_dim, n_outputs, options)
        o = self.options
        self.lstm = nn.LSTM(in_dim, o.hidden, batch_first=True, bidirectional=o.bidirectional)
        self.dropout = nn.Dropout(o.dropout)
        self.out = nn.Linear(o.hidden * (2 if o.bidirectional else 1), n_outputs)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(x * mask[..., None], lengths, batch_first=True,
                                      enforce_sorted=False)
        y, _ = self.lstm(packed)
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]
        return self.out(self.dropout(masked_max(y, valid)))
