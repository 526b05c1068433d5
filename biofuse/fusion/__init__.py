"""Fusion methods, one file each, behind one registry keyed by the CLI name."""

from __future__ import annotations

from biofuse.fusion.base import Fusion, FusionOutput
from biofuse.fusion.concat import ConcatFusion
from biofuse.fusion.isoformer import IsoFormerAggregation
from biofuse.fusion.mil import GatedAttentionMIL
from biofuse.fusion.none import NoFusion
from biofuse.fusion.seqconcat import SequenceConcat
from biofuse.fusion.xattn import CrossModalAttention

FUSIONS: dict[str, type[Fusion]] = {}


def register_fusion(name: str, cls: type[Fusion]) -> None:
    if name in FUSIONS:
        raise ValueError(f"fusion {name!r} is registered twice")
    FUSIONS[name] = cls


for _name, _cls in [("none", NoFusion), ("concat", ConcatFusion), ("mil", GatedAttentionMIL),
                    ("xattn", CrossModalAttention), ("seqconcat", SequenceConcat),
                    ("isoformer", IsoFormerAggregation)]:
    register_fusion(_name, _cls)

__all__ = ["FUSIONS", "Fusion", "FusionOutput", "register_fusion"]
