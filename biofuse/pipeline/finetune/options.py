"""How `biofuse finetune` trains: the shared training options (TrainOptions) with finetune's own
defaults, plus the encoder, the method (LoRA or full) and how the encoder runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from biofuse.errors import ConfigError
from biofuse.heads import HEADS, NETWORK_HEADS
from biofuse.modality import Modality
from biofuse.options import option, same_option
from biofuse.pipeline.encoders import check_device, default_device, default_dtype
from biofuse.pipeline.train.options import HEAD_LR, TrainOptions

METHODS = ("lora", "full")
#: encoder families finetune trains (transformers with the BERT layer layout)
FINETUNABLE = ("esm2", "nt", "rnafm")
#: the encoder's learning rate when --backbone-lr is not given: the Bridging paper's 5e-5 for
#: full finetuning; LoRA adapters start at zero and need a larger step (tested in bench/)
DEFAULT_BACKBONE_LR = {"full": 5e-5, "lora": 5e-4}
#: a micro-batch's padded tokens when --batch-tokens is not given
DEFAULT_BATCH_TOKENS = {"cpu": 4096, "cuda": 16384}


@dataclass(frozen=True, kw_only=True)
class FinetuneOptions(TrainOptions):
    """How ``finetune`` trains; every field is also a ``biofuse finetune`` flag."""

    modality: str = option("protein", "Which sequence of each row the encoder reads.",
                           choices=("dna", "rna", "protein"))
    model: str | None = option(
        None, "Registered transformer encoder (esm2_*, nt_*, rnafm), model directory, or hub "
        "id. Default: the modality's default encoder.")
    method: str = option("lora", "lora: train LoRA adapters and the head (the encoder's "
                         "weights stay frozen); full: train every weight.", choices=METHODS)
    lora_rank: int = option(16, "LoRA rank (the Bridging paper tried 16, 32, 64, 128).", min=1,
                            max=4096)
    lora_alpha: float | None = option(None, "LoRA scaling numerator (updates scale by "
                                      "alpha/rank). Default: twice the rank.", above=0)
    lora_dropout: float = option(0.0, "Dropout on the LoRA adapters' input (0.1 made a CPU "
                                 "step 1.46x slower: docs/finetune.md).", min=0, max=0.95)
    backbone_lr: float | None = option(
        None, "Learning rate of what trains in the encoder (its weights for full, the "
        "adapters for lora). Default: 5e-5 full (the Bridging paper's), 5e-4 lora.", above=0,
        max=10)
    checkpointing: bool = option(False, "Gradient checkpointing: recompute each layer's "
                                 "activations in the backward pass (less memory for long "
                                 "sequences, ~30% slower).")
    long_policy: str = option("window", "Sequences longer than the encoder's context: "
                              "overlapping windows stitched back to full length, or "
                              "truncation.", flag="--long", choices=("window", "truncate"))
    window_overlap: int = option(64, "Tokens shared by consecutive windows.", min=0)
    device: str | None = option(None, "cpu, cuda, cuda:1 ... Default: cuda if available.")
    # the shared options, with finetune's defaults
    lr: float | None = same_option(TrainOptions, "lr", HEAD_LR, "Of the head (--backbone-lr "
                                   "sets the encoder's).")
    weight_decay: float = same_option(TrainOptions, "weight_decay", 0.01, "AdamW's.")
    epochs: int = same_option(TrainOptions, "epochs", 20)
    patience: int = same_option(TrainOptions, "patience", 5)
    lr_patience: int = same_option(TrainOptions, "lr_patience", 2)
    batch_size: int = same_option(TrainOptions, "batch_size", 32, "Micro-batches within "
                                  "--batch-tokens accumulate their gradients up to it.")
    batch_tokens: int | None = same_option(
        TrainOptions, "batch_tokens", None, "A step's rows are cut into micro-batches of at "
        f"most this many tokens (windows x padded width). Default: "
        f"{DEFAULT_BATCH_TOKENS['cpu']} on CPU, {DEFAULT_BATCH_TOKENS['cuda']} on CUDA.")
    dtype: str = same_option(TrainOptions, "dtype", "auto")

    def __post_init__(self) -> None:
        super().__post_init__()
        if HEADS[self.head].kind != "network":
            raise ConfigError(f"--head {self.head} is a scikit-learn probe; finetune trains the "
                              "encoder through a network head.",
                              f"Use one of {', '.join(NETWORK_HEADS)}, or `biofuse fit --head "
                              f"{self.head}` on the cached embeddings.")
        if self.lr is None:
            object.__setattr__(self, "lr", HEAD_LR)
        if self.device is not None:
            check_device(self.device)

    @property
    def encoder_model(self) -> str:
        return self.model or Modality.parse(self.modality).default_encoder

    def resolved(self) -> dict[str, Any]:
        """The settings a run really used (defaults that depend on the machine or the method
        filled in)."""
        device = self.device or default_device()
        return {"device": device,
                "dtype": default_dtype(device) if self.dtype == "auto" else self.dtype,
                "batch_tokens": self.batch_tokens or DEFAULT_BATCH_TOKENS[
                    "cuda" if device.startswith("cuda") else "cpu"],
                "backbone_lr": self.backbone_lr or DEFAULT_BACKBONE_LR[self.method],
                "lora_alpha": self.lora_alpha or 2.0 * self.lora_rank}
