"""Prediction heads, one file each, behind one registry keyed by the CLI name: networks that
train with the fusion model (``kind = "network"``), and scikit-learn probes on pooled
embeddings (``kind = "probe"``, probes.py)."""

from __future__ import annotations

from biofuse.heads.base import Head
from biofuse.heads.lstm import LSTMHead
from biofuse.heads.meanlinear import MeanLinear
from biofuse.heads.mlp import MLPHead
from biofuse.heads.probes import PROBES, Probe
from biofuse.heads.textcnn import TextCNN
from biofuse.registry import Registry

HEADS: Registry[str, type[Head] | type[Probe]] = Registry("head")
register_head = HEADS.register

for _name, _cls in [("textcnn", TextCNN), ("lstm", LSTMHead), ("mlp", MLPHead),
                    ("meanlinear", MeanLinear), *PROBES.items()]:
    register_head(_name, _cls)

#: the heads that train as networks (with a fusion model, or on a finetuned encoder)
NETWORK_HEADS = tuple(sorted(n for n, cls in HEADS.items() if cls.kind == "network"))

__all__ = ["HEADS", "NETWORK_HEADS", "Head", "Probe", "register_head"]
