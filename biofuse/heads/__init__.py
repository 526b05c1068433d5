"""Prediction heads, one file each, behind one registry keyed by the CLI name."""

from __future__ import annotations

from biofuse.heads.base import Head
from biofuse.heads.lstm import LSTMHead
from biofuse.heads.meanlinear import MeanLinear
from biofuse.heads.mlp import MLPHead
from biofuse.heads.textcnn import TextCNN
from biofuse.registry import Registry

HEADS: Registry[str, type[Head]] = Registry("head")
register_head = HEADS.register

for _name, _cls in [("textcnn", TextCNN), ("lstm", LSTMHead), ("mlp", MLPHead),
                    ("meanlinear", MeanLinear)]:
    register_head(_name, _cls)

__all__ = ["HEADS", "Head", "register_head"]
