"""What a fusion method is: modules that turn per-modality embeddings into one sequence.

``forward(feats, masks, present)``: ``feats[m]`` is [B, T, D_m] (on the codon grid when the
method is ``aligned``, the encoder's own tokens otherwise), ``masks[m]`` [B, T] marks valid
positions, ``present[m]`` [B] marks rows that have modality m at all. It returns the fused
sequence [B, T', out_dim], its mask [B, T'], and extras (attention weights, auxiliary loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from biofuse.errors import ConfigError
from biofuse.options import NoOptions, check, option


@dataclass
class FusionOutput:
    x: torch.Tensor  # [B, T, out_dim], exactly zero where mask is False
    mask: torch.Tensor  # [B, T] bool
    aux_loss: torch.Tensor | None = None  # added to the task loss (MIL's entropy term)
    weights: dict[str, torch.Tensor] = field(default_factory=dict)  # per-sample, for audit


@dataclass(frozen=True, kw_only=True)
class AttentionOptions:
    """Options of the attention-based methods (each sets its prefix and default heads)."""

    prefix = ""
    dim: int = option(256, "Shared width every modality is projected to.", min=1)
    heads: int = option(4, "Attention heads (must divide the width).", min=1)
    dropout: float = option(0.1, "Attention dropout.", min=0, max=0.95)

    def __post_init__(self) -> None:
        check(self, self.prefix)
        if self.dim % self.heads:
            raise ConfigError(f"--{self.prefix}heads {self.heads} does not divide "
                              f"--{self.prefix}dim {self.dim}.",
                              "Pick a head count that divides the width.")


class Fusion(nn.Module):
    #: True: inputs are on the codon grid; False: each modality keeps its own tokens
    aligned: bool = True
    #: the method's options (a frozen dataclass of ``biofuse.options.option`` fields); the
    #: constructor takes them as keyword arguments
    Options: type = NoOptions
    #: (fusion option, fit option listing its candidates): chosen on validation by ``fit``
    search: tuple[str, str] | None = None
    #: the learning rate ``fit`` uses unless ``--lr`` is given (BioLangFusion's 1e-3)
    lr: float = 1e-3
    out_dim: int

    def __init__(self, dims: dict[str, int], options=None):
        """``dims``: modality -> embedding width; ``options``: an instance of ``Options`` (its
        defaults when left out; the defaults live there only)."""
        super().__init__()
        self.modalities = sorted(dims)
        self.dims = dict(dims)
        self.options = options if options is not None else self.Options()


def compact(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's valid positions to the front, in order (concatenating padded sequences
    leaves gaps that sequence heads would read across); the width shrinks to the longest row."""
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # valid first, in order
    width = max(int(mask.sum(1).max()), 1)
    order = order[:, :width]
    x = torch.gather(x, 1, order[..., None].expand(-1, -1, x.shape[-1]))
    mask = torch.gather(mask, 1, order)
    return x * mask[..., None], mask
