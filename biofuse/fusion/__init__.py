"""Fusion methods, one file each, behind one registry keyed by the CLI name."""

from __future__ import annotations

from biofuse.fusion.base import Fusion, FusionOutput
from biofuse.fusion.cabstractor import CAbstractorFusion
from biofuse.fusion.concat import ConcatFusion
from biofuse.fusion.isoformer import IsoFormerAggregation
from biofuse.fusion.mil import GatedAttentionMIL
from biofuse.fusion.none import NoFusion
from biofuse.fusion.resampler import PerceiverFusion, PerceiverXattnFusion
from biofuse.fusion.seqconcat import SequenceConcat
from biofuse.fusion.xattn import CrossModalAttention
from biofuse.registry import Registry

FUSIONS: Registry[str, type[Fusion]] = Registry("fusion")
register_fusion = FUSIONS.register


for _name, _cls in [("none", NoFusion), ("concat", ConcatFusion), ("mil", GatedAttentionMIL),
                    ("xattn", CrossModalAttention), ("seqconcat", SequenceConcat),
                    ("isoformer", IsoFormerAggregation), ("perceiver_xattn", PerceiverXattnFusion),
                    ("perceiver", PerceiverFusion), ("cabstractor", CAbstractorFusion)]:
    register_fusion(_name, _cls)

__all__ = ["FUSIONS", "Fusion", "FusionOutput", "register_fusion"]
