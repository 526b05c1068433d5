"""A complete fusion model: alignment (for aligned methods), a fusion method, a head.

``ModelConfig`` is enough to rebuild the model; it is written into every run directory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

import torch
from torch import nn

from biofuse.fusion import FUSIONS
from biofuse.fusion.align import Aligner
from biofuse.fusion.base import FusionOutput, codon_patches, resolved
from biofuse.heads import HEADS
from biofuse.options import canonical_names, from_dict


@dataclass(frozen=True)
class ModelConfig:
    modalities: tuple[str, ...]
    dims: dict[str, int]
    nt_per_token: dict[str, int]
    fusion: str
    head: str
    n_outputs: int
    fusion_options: dict = field(default_factory=dict)
    head_options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """A saved config, options renamed since it was written under their current names."""
        fusion, head = FUSIONS[d["fusion"]].Options, HEADS[d["head"]].Options
        return cls(**{**d, "modalities": tuple(d["modalities"]),
                      "fusion_options": canonical_names(fusion, d.get("fusion_options"),
                                                        warn=False),
                      "head_options": canonical_names(head, d.get("head_options"), warn=False)})

    def fusion_patches(self, fusion_options) -> dict[str, int]:
        """Modality -> tokens stacked per patch, for methods that keep each modality's tokens
        and group those finer than a codon (unless ``nucleotide_tokens``)."""
        if FUSIONS[self.fusion].aligned or getattr(fusion_options, "nucleotide_tokens", True):
            return {}
        return {m: 3 for m in self.modalities if self.nt_per_token[m] == 1}

    def resolved_fusion_options(self, values: dict | None = None) -> dict:
        """The fusion options (``values``, else this config's, less any option removed since it
        was saved) with every default that follows the inputs' widths filled in for this
        config's inputs: what the model is built with."""
        cls = FUSIONS[self.fusion].Options
        if values is None:
            known = {f.name for f in fields(cls)}
            values = {k: v for k, v in self.fusion_options.items() if k in known}
        options = from_dict(cls, values, cls.prefix)
        patch = self.fusion_patches(options)
        return asdict(resolved(options, {m: self.dims[m] * patch.get(m, 1)
                                         for m in self.modalities}))


class FusionModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        dims = {m: config.dims[m] for m in config.modalities}
        fusion_cls, head_cls = FUSIONS[config.fusion], HEADS[config.head]
        fusion_options = from_dict(fusion_cls.Options, config.fusion_options,
                                   fusion_cls.Options.prefix)
        head_options = from_dict(head_cls.Options, config.head_options, head_cls.Options.prefix)
        self.patch = config.fusion_patches(fusion_options)  # modality -> tokens per patch
        self.fusion = fusion_cls({m: d * self.patch.get(m, 1) for m, d in dims.items()},
                                 fusion_options)
        #: the config with the width-following defaults as built: saved with the weights, it
        #: rebuilds this model even after those defaults change
        self.config = replace(config, fusion_options=asdict(self.fusion.options))
        self.aligner = (Aligner({m: config.nt_per_token[m] for m in config.modalities}, dims)
                        if self.fusion.aligned else None)
        self.head = head_cls(self.fusion.out_dim, config.n_outputs, head_options)

    def forward(self, feats: dict[str, torch.Tensor], masks: dict[str, torch.Tensor],
                present: dict[str, torch.Tensor], grid: torch.Tensor
                ) -> tuple[torch.Tensor, FusionOutput]:
        """feats[m]: [B, T_m, D_m]; masks[m]: [B, T_m]; present[m]: [B]; grid: [B] codons."""
        if self.aligner is not None:
            feats, grid_mask = self.aligner(feats, masks, grid)
            masks = {m: grid_mask for m in feats}
        if self.patch:
            feats, masks = dict(feats), dict(masks)
            for m, k in self.patch.items():
                feats[m], masks[m] = codon_patches(feats[m], masks[m], k)
        fused = self.fusion(feats, masks, present)
        return self.head(fused.x, fused.mask), fused  # [B, n_outputs]
