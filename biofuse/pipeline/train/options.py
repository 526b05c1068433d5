"""How a model trains: the options every training stage shares (:class:`TrainOptions`), and those
of `biofuse fit` (:class:`FitOptions`). `biofuse finetune`'s options extend the same base
(biofuse.pipeline.finetune.options), so a training option is declared, documented and checked
once; a stage that wants another default says so with ``same_option``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from biofuse.errors import ConfigError
from biofuse.fusion import FUSIONS
from biofuse.heads import HEADS
from biofuse.modality import ALL, Modality, parse_modalities
from biofuse.options import canonical_names, check, from_dict, option, same_option
from biofuse.pipeline.encoders import default_dtype

#: the learning rate of a head trained without a fusion method (finetune)
HEAD_LR = 1e-3


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """What fit and finetune share: the head, the optimisation, early stopping, precision."""

    prefix = ""
    head: str = option("textcnn", "Prediction head.", choices=tuple(sorted(HEADS)))
    seed: int = option(0, "Random seed (initialisation and batch order).", min=0)
    epochs: int = option(500, "Maximum number of epochs.", min=1)
    batch_size: int = option(32, "Rows per optimisation step.", min=1)
    batch_tokens: int | None = option(
        16384, "Padded positions (rows x longest row) one forward pass may hold.", min=1)
    lr: float | None = option(None, "Learning rate.", above=0, max=10)
    weight_decay: float = option(0.0, "Weight decay.", min=0, max=10)
    patience: int = option(20, "Early stopping: epochs without a better validation metric.",
                           min=1)
    lr_patience: int = option(5, "Epochs without progress before the learning rate drops.",
                              min=0)
    dtype: str = option(
        "fp32", "Compute precision: fp32, or bf16 autocast (matmuls and convolutions in "
        "bfloat16; weights and optimizer stay fp32; several times faster on CPUs with AMX, "
        "docs/fit.md); auto = bf16 on CUDA and on CPUs with AMX or AVX512-BF16.",
        choices=("auto", "fp32", "bf16"), aliases=("precision",))
    threads: int | None = option(None, "Torch threads for training. Default: torch's own.",
                                 min=1)
    log1p: bool = option(False, "Regress log1p(target) (IsoFormer's expression).")
    head_options: dict = option({}, "Options of the head.", cli=False)

    def __post_init__(self) -> None:
        check(self)
        cls = HEADS[self.head].Options
        object.__setattr__(self, "head_options",
                           canonical_names(cls, self.head_options, cls.prefix))
        self.head_config()  # validates the head's options now

    def head_config(self):
        cls = HEADS[self.head]
        return from_dict(cls.Options, self.head_options, cls.Options.prefix)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class FitOptions(TrainOptions):
    """How ``fit`` trains; every field is also a ``biofuse fit`` flag."""

    fusion: str | None = option(
        None, "Fusion method (see the list above). Default: mil; for a scikit-learn head "
        "(ridge, logistic, gbm), none for one modality and concat for several.",
        choices=tuple(sorted(FUSIONS)))
    modalities: tuple[str, ...] | None = option(
        None, "Comma-separated subset of dna,rna,protein. Default: all three (protein for none).")
    encoders: dict = option(
        {}, "Modality -> encoder: a registered name, a model directory or hub id, or a cache "
        "store id (the fingerprint id `biofuse cache info` lists) to name one store exactly.",
        cli=False)
    optimizer: str = option("adam", "Optimizer.", choices=("adam", "adamw"))
    val_window: int = option(
        5, "Select on the mean validation metric of the last K epochs (best weights, early "
        "stopping and the learning-rate schedule all see it), so a lucky epoch on a noisy "
        "validation curve is not chosen over a stretch of good ones; 1 = each epoch's own "
        "metric, as BioLangFusion (docs/fit.md).", min=1, max=50)
    entropy_weights: tuple[float, ...] = option(
        (0.0, 0.01, 0.1), "MIL: the entropy-regularisation weights tried, comma-separated; the "
        "best on validation wins.")
    fusion_options: dict = option({}, "Options of the fusion method.", cli=False)
    # the shared options, as fit explains them
    batch_tokens: int | None = same_option(
        TrainOptions, "batch_tokens", 16384, "Long rows train in smaller batches: less memory, "
        "and faster (docs/fit.md); rows shorter than this / --batch-size are unaffected.")
    lr: float | None = same_option(
        TrainOptions, "lr", None, "Default: the fusion method's own (" + ", ".join(
            f"{name} {cls.lr:g}" for name, cls in sorted(FUSIONS.items())) + "; the attention "
        "fusions' post-norm blocks can collapse at 1e-3, docs/fit.md).")

    def __post_init__(self) -> None:
        if isinstance(self.modalities, str):  # "dna,rna" from Python, as on the command line
            object.__setattr__(self, "modalities", tuple(self.modalities.split(",")))
        super().__post_init__()
        probe = HEADS[self.head].kind == "probe"
        if probe and self.modalities is None and self.encoders:  # the modalities encoders
            object.__setattr__(self, "modalities", tuple(self.encoders))  # were named for
        if self.fusion is None and not probe:
            object.__setattr__(self, "fusion", "mil")
        default = (Modality.PROTEIN,) if self.fusion == "none" else ALL
        mods = parse_modalities(self.modalities) if self.modalities is not None else default
        object.__setattr__(self, "modalities", mods)
        if self.fusion is None:  # a probe concatenates its modalities' pooled vectors
            object.__setattr__(self, "fusion", "none" if len(mods) == 1 else "concat")
        if probe and self.fusion not in ("none", "concat"):
            raise ConfigError(f"--head {self.head} reads each modality's pooled embedding; "
                              f"--fusion {self.fusion} has nothing to fuse there.",
                              "Use --fusion none (one modality) or concat (several), or leave "
                              "--fusion out.")
        if self.lr is None:
            object.__setattr__(self, "lr", FUSIONS[self.fusion].lr)
        if self.dtype == "auto":  # fit trains on the CPU: record what it will run in
            object.__setattr__(self, "dtype", default_dtype("cpu"))
        if self.fusion == "none" and len(mods) != 1:
            raise ConfigError("--fusion none probes one modality.",
                              "Pass one modality, e.g. --modalities protein.")
        encoders = {Modality.parse(m): str(e) for m, e in dict(self.encoders).items()}
        object.__setattr__(self, "encoders", encoders)
        weights = tuple(float(w) for w in self.entropy_weights)
        if not weights or any(not math.isfinite(w) or w < 0 for w in weights):
            raise ConfigError(f"--entropy-weights {','.join(map(str, weights))} must be "
                              "non-negative numbers.", "For example --entropy-weights 0,0.01,0.1.")
        object.__setattr__(self, "entropy_weights", weights)
        cls = FUSIONS[self.fusion].Options
        object.__setattr__(self, "fusion_options",
                           canonical_names(cls, self.fusion_options, cls.prefix))
        self.fusion_config()  # validates the method's options now

    def encoder(self, modality: Modality) -> str:
        """The encoder (name, directory, hub id or cache store id) of ``modality``."""
        return self.encoders.get(modality, modality.default_encoder)

    def fusion_config(self):
        cls = FUSIONS[self.fusion]
        return from_dict(cls.Options, self.fusion_options, cls.Options.prefix)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "modalities": [str(m) for m in self.modalities],
                "encoders": {str(m): e for m, e in self.encoders.items()}}


#: FitOptions fields that list the candidates of a fusion's validation search (MIL:
#: entropy_weights); meaningless for the other fusions
SEARCH_FIELDS = frozenset(cls.search[1] for cls in FUSIONS.values() if cls.search)


def unused_search_fields(fusion: str) -> set[str]:
    """The search fields ``fusion`` ignores."""
    search = FUSIONS[fusion].search if fusion in FUSIONS else None
    return set(SEARCH_FIELDS) - ({search[1]} if search else set())


__all__ = ["HEAD_LR", "SEARCH_FIELDS", "FitOptions", "TrainOptions", "unused_search_fields"]
