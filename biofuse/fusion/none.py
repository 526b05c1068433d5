"""[none] One modality, no fusion: the "probing" setting of the Bridging paper."""

from __future__ import annotations

from biofuse.fusion.base import Fusion, FusionOutput


class NoFusion(Fusion):
    aligned = False

    def __init__(self, dims: dict[str, int], options=None):
        super().__init__(dims, options)
        if len(dims) != 1:
            raise ValueError(f"fusion 'none' takes one modality, got {sorted(dims)}")
        self.out_dim = next(iter(dims.values()))

    def forward(self, feats, masks, present):
        (m,) = self.modalities
        return FusionOutput(feats[m], masks[m] & present[m][:, None])
