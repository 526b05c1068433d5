"""What a fusion method is: modules that turn per-modality embeddings into one sequence.

``forward(feats, masks, present)``: ``feats[m]`` is [B, T, D_m] (on the codon grid when the
method is ``aligned``, the encoder's own tokens otherwise), ``masks[m]`` [B, T] marks valid
positions, ``present[m]`` [B] marks rows that have modality m at all. It returns the fused
sequence [B, T', out_dim], its mask [B, T'], and extras (attention weights, auxiliary loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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


#: no attention head narrower than this unless asked for: the narrowest of the papers' own
#: configurations (IsoFormer's 256 wide, 8 heads). On one-hot inputs (68-72 wide) the 4-8 heads
#: of 9-17 dims left the CPU's attention kernel memory-bound: 2 heads halve an isoformer epoch
#: on mRFP at the same FLOPs (docs/fit.md, "Attention heads")
MIN_HEAD_WIDTH = 32


@dataclass(frozen=True, kw_only=True)
class AttentionOptions:
    """Options of the attention-based methods (each sets its prefix and ``wide_heads``, its
    paper's head count)."""

    prefix = ""
    wide_heads = 4  # BioLangFusion's
    dim: int | None = option(None, "Shared width every modality is projected to. Default: the "
                             "widest input's width rounded up to a multiple of the heads, at most "
                             "256 (256 for any pretrained encoder; 66 for one-hot inputs).",
                             min=1)
    heads: int | None = option(None, "Attention heads (must divide the width). Default: the "
                               "paper's count (xattn 4, the others 8), fewer where a head would "
                               "be narrower than 32 dims (2 on one-hot inputs).", min=1)
    dropout: float = option(0.0, "Dropout on the attention weights. BioLangFusion's 0.1 keeps "
                            "PyTorch off its fused attention kernel on CPU: 4x slower attention "
                            "on mRFP's rows (docs/fit.md).", min=0, max=0.95)

    def __post_init__(self) -> None:
        check(self, self.prefix)
        if self.dim is not None and self.heads is not None and self.dim % self.heads:
            raise ConfigError(f"--{self.prefix}heads {self.heads} does not divide "
                              f"--{self.prefix}dim {self.dim}.",
                              "Pick a head count that divides the width.")

    def resolved(self, dims: dict[str, int]) -> AttentionOptions:
        """Width and heads for inputs of widths ``dims``: each as given, else the heads follow
        the width (the paper's count, fewer where heads would be narrower than
        MIN_HEAD_WIDTH) and the width follows the widest input (``shared_width``)."""
        heads = self.heads
        if heads is None:
            width = self.dim if self.dim is not None else min(max(dims.values()), 256)
            most = max(1, min(self.wide_heads, width // MIN_HEAD_WIDTH))
            heads = max(h for h in range(1, most + 1) if self.dim is None or self.dim % h == 0)
        return replace(self, dim=shared_width(self.dim, dims, heads), heads=heads)


@dataclass(frozen=True, kw_only=True)
class TokenOptions:
    """The option of the methods that keep each modality's own tokens (``aligned = False``)."""

    nucleotide_tokens: bool = option(
        False, "Keep tokens finer than a codon (a nucleotide one-hot's, RNA-FM's) one per "
        "nucleotide, as biofuse 0.6 did. By default every 3 are stacked into one codon-sized "
        "patch before the projection: a third of the tokens, each seeing a whole codon "
        "(IsoFormer's own encoders have no token finer than a 6-mer).")


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
        self.options = resolved(options if options is not None else self.Options(), dims)


def resolved(options, dims: dict[str, int]):
    """``options`` with every default that follows the inputs' widths (a ``None`` width or head
    count) filled in for inputs of widths ``dims``, through the options class's own
    ``resolved(dims)`` where it has one. A model is built from these and its saved config
    records them, so a saved model rebuilds the same even after such a default changes."""
    resolve = getattr(options, "resolved", None)
    return resolve(dims) if resolve is not None else options


def shared_width(dim: int | None, dims: dict[str, int], multiple: int = 1) -> int:
    """The width every modality is projected to: ``dim`` when given, else the widest input's
    width rounded up to a multiple of ``multiple`` (the heads), at most 256. BioLangFusion's and
    IsoFormer's 256-600 are for 640-3,072-wide pretrained embeddings; projecting a 5-65-wide
    one-hot to 256 multiplies the attention's and the head's cost by up to 15 for nothing
    (docs/fit.md, "The attention fusions' width")."""
    if dim is not None:
        return dim
    widest = -(-max(dims.values()) // multiple) * multiple
    return min(widest, 256 // multiple * multiple)


def codon_patches(x: torch.Tensor, mask: torch.Tensor, k: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack runs of ``k`` tokens into one: x [B, T, D] -> [B, ceil(T/k), k*D], in order (the
    last patch zero-padded); a patch is valid when any of its tokens is."""
    b, t, d = x.shape
    pad = (-t) % k
    x = nn.functional.pad(x * mask[..., None], (0, 0, 0, pad))
    mask = nn.functional.pad(mask, (0, pad), value=False)
    return x.reshape(b, -1, k * d), mask.view(b, -1, k).any(2)


def compact(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's valid positions to the front, in order (concatenating padded sequences
    leaves gaps that sequence heads would read across); the width shrinks to the longest row."""
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # valid first, in order
    width = max(int(mask.sum(1).max()), 1)
    order = order[:, :width]
    x = torch.gather(x, 1, order[..., None].expand(-1, -1, x.shape[-1]))
    mask = torch.gather(mask, 1, order)
    return x * mask[..., None], mask


def attend(attn: nn.MultiheadAttention, query: torch.Tensor, context: torch.Tensor,
           ignore: torch.Tensor) -> torch.Tensor:
    """``attn(query, context, context, key_padding_mask=ignore)`` of a batch-first
    nn.MultiheadAttention, the same maths without its layout copies: the module re-lays its
    packed key/value projection sequence-first and back ([S, B, 2, E] <-> [2, S, B, E]), which
    on short rows (CoV-Vac's 27 codons) was a quarter of an ``xattn`` epoch on CPU. The module
    keeps the parameters, so saved models load as before. query [B, L, E], context [B, S, E],
    ignore [B, S] (True: not attended) -> [B, L, E]."""
    e, h = attn.embed_dim, attn.num_heads

    def project(x: torch.Tensor, i: int) -> torch.Tensor:  # the i-th of q, k, v: [B, H, T, E/H]
        part = slice(i * e, (i + 1) * e)
        y = nn.functional.linear(x, attn.in_proj_weight[part], attn.in_proj_bias[part])
        return y.view(*x.shape[:2], h, e // h).transpose(1, 2)

    out = nn.functional.scaled_dot_product_attention(
        project(query, 0), project(context, 1), project(context, 2),
        attn_mask=~ignore[:, None, None, :], dropout_p=attn.dropout if attn.training else 0.0)
    return attn.out_proj(out.transpose(1, 2).flatten(2))
