"""[mil] BioLangFusion's entropy-regularised gated-attention multiple-instance learning over
modalities (Ilse et al. 2018): each modality is an instance.

    H_m = tanh(Linear_m(X_m))                      per-modality projection to ``dim`` (600)
    s_m = w^T [tanh(V_m h_m + b_m) * sigmoid(U_m h_m + c_m)] / tau,   h_m = mean over codons of H_m
    alpha = softmax over the modalities present in the row;  fused = sum_m alpha_m H_m
    loss += lambda * mean_batch(entropy(alpha))    (lambda chosen on validation, 0 included)

tau is learned and clamped to [0.02, 20]. Ablations: ``shared_projection`` (one Linear for all
modalities, which then need one dim) and ``token_level`` (alpha per codon instead of per row).
``layer_norm`` (biofuse's, off by default) layer-normalises each projection before the tanh.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from biofuse.fusion.base import Fusion, FusionOutput
from biofuse.options import check, option


@dataclass(frozen=True, kw_only=True)
class MILOptions:
    prefix = "mil-"
    dim: int = option(600, "Width of each modality's projection (BioLangFusion: 600).", min=1)
    attn_dim: int = option(100, "Width of the gated attention's hidden layer.", min=1)
    entropy_weight: float = option(0.0, "Weight of the entropy term (chosen on validation "
                                   "from --entropy-weights).", min=0, cli=False)
    shared_projection: bool = option(False, "Ablation: one projection for all modalities (they "
                                     "must share a dim).")
    token_level: bool = option(False, "Ablation: attention weights per codon instead of per "
                               "sequence.")
    layer_norm: bool = option(False, "Layer-normalise each modality's projection (no learned "
                              "scale): the attention weights are then the only way to turn a "
                              "modality down, so they say which one the model reads (docs/fit.md "
                              "has what it costs).", aliases=("normalise",))

    def __post_init__(self) -> None:
        check(self, self.prefix)


class GatedAttentionMIL(Fusion):
    Options = MILOptions
    search = ("entropy_weight", "entropy_weights")

    def __init__(self, dims: dict[str, int], options: MILOptions | None = None):
        super().__init__(dims, options)
        o = self.options
        dim, attn_dim, shared_projection = o.dim, o.attn_dim, o.shared_projection
        if shared_projection and len(set(dims.values())) != 1:
            from biofuse.errors import ConfigError

            raise ConfigError(f"A shared MIL projection needs modalities of one dim; got {dims}.",
                              "Use encoders of equal dim, or drop --mil-shared-projection.")
        shared = nn.Linear(next(iter(dims.values())), dim) if shared_projection else None
        self.proj = nn.ModuleDict({m: shared or nn.Linear(dims[m], dim) for m in self.modalities})
        self.V = nn.ModuleDict({m: nn.Linear(dim, attn_dim) for m in self.modalities})
        self.U = nn.ModuleDict({m: nn.Linear(dim, attn_dim) for m in self.modalities})
        self.w = nn.Linear(attn_dim, 1, bias=False)
        self.log_tau = nn.Parameter(torch.zeros(()))
        self.entropy_weight = o.entropy_weight
        self.token_level = o.token_level
        self.layer_norm = o.layer_norm
        self.out_dim = dim

    def tau(self) -> torch.Tensor:
        return self.log_tau.exp().clamp(0.02, 20.0)

    def forward(self, feats, masks, present):
        hs, scores = [], []
        for m in self.modalities:
            z = self.proj[m](feats[m])  # [B, G, dim]; padding is weighted 0 below
            if self.layer_norm:
                z = nn.functional.layer_norm(z, z.shape[-1:])
            h = torch.tanh(z)
            if self.token_level:
                summary = h  # [B, G, dim]
            else:  # masked mean over codons, as one batched matmul: [B, 1, G] @ [B, G, dim]
                w = masks[m].to(h.dtype)
                summary = torch.bmm(w[:, None, :], h).squeeze(1) / w.sum(1, keepdim=True).clamp(min=1)
            gate = torch.tanh(self.V[m](summary)) * torch.sigmoid(self.U[m](summary))
            score = self.w(gate).squeeze(-1).float() / self.tau()  # [B] or [B, G]
            avail = present[m] if not self.token_level else masks[m] & present[m][:, None]
            scores.append(score.masked_fill(~avail, float("-inf")))
            hs.append(h)
        s = torch.stack(scores, dim=-1)  # [B, (G,) M]
        none = torch.isinf(s).all(-1, keepdim=True)  # rows/positions with no modality at all
        alpha = torch.softmax(s.masked_fill(none, 0.0), dim=-1).masked_fill(none, 0.0)
        # fused = sum_m alpha_m * mask_m * H_m: one multiply-add pass over H per modality (the
        # [B, G, dim] tensors dominate the cost; no stacked [B, G, dim, M] copy)
        fused = None
        for i, (m, h) in enumerate(zip(self.modalities, hs)):
            a = alpha[..., i] if self.token_level else alpha[:, i, None]  # [B, G] or [B, 1]
            w = (a * masks[m])[..., None].to(h.dtype)  # [B, G, 1]
            fused = h * w if fused is None else torch.addcmul(fused, h, w)
        mask = torch.stack([masks[m] & present[m][:, None] for m in self.modalities]).any(0)
        entropy = -(alpha * alpha.clamp(min=1e-12).log()).sum(-1)
        aux = self.entropy_weight * entropy.mean() if self.entropy_weight else None
        weights = alpha if not self.token_level else (
            (alpha * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1))
        return FusionOutput(fused, mask, aux,
                            {m: weights[:, i] for i, m in enumerate(self.modalities)})
