"""What every encoder is: a description (``EncoderInfo``), a request (``EncoderRequest``) and the
small interface the extractor drives (``Encoder``).

An encoder works on token ids: ``tokenize`` turns a prepared sequence into ids without special
tokens, ``forward`` embeds a batch of id lists (adding specials, padding, masking) and returns one
float32 [n_tokens, dim] array per list with the specials stripped. Working on ids lets the
extractor window any encoder the same way: split the ids, embed the windows, stitch them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from biofuse.cache import Fingerprint
from biofuse.cache.fingerprint import COMPUTE_DTYPES
from biofuse.modality import Modality

DTYPES = COMPUTE_DTYPES
LONG_POLICIES = ("window", "truncate", "drop")
#: LoRA targets of the BERT-style layers ESM-2, Nucleotide Transformer and RNA-FM share (module
#: names ``encoder.layer.N.…``): attention query, key, value and output projections, and both
#: feed-forward projections (NT-v2's gated one included)
BERT_LORA_TARGETS = (r".*encoder\.layer\.\d+\.(attention\.self\.(query|key|value)"
                     r"|attention\.output\.dense|intermediate\.dense|output\.dense)")


@dataclass(frozen=True)
class EncoderInfo:
    """A registered encoder: what the CLI name stands for."""

    name: str
    modality: Modality
    family: str
    source: str  # hub id, or "builtin"
    dim: int
    n_layers: int
    nt_per_token: int  # nucleotides per output token: 3 for protein (a codon), 6 for 6-mers, 1
    context: int  # max tokens per forward, special tokens excluded
    extra: str | None = None  # the pip extra that provides its dependencies
    description: str = ""

    @property
    def model_id(self) -> str:
        """The model identity recorded in fingerprints: the hub id or directory it loads, or
        ``<name>-<modality>`` for a builtin without weights (one-hot)."""
        return self.source if self.source != "builtin" else f"{self.name}-{self.modality}"


@dataclass(frozen=True)
class EncoderRequest:
    """Everything needed to build an encoder in any process (it is sent to Dask workers)."""

    model: str  # registered name, local directory, or hub id
    modality: Modality
    layer: int = -1
    dtype: str = "fp32"  # compute dtype: fp32, bf16, fp16
    long_policy: str = "window"
    window_overlap: int = 64
    device: str = "cpu"
    trust_remote_code: bool = False
    options: dict = field(default_factory=dict)


def torch_dtype(name: str):
    """The torch dtype of a --dtype name (fp32, bf16, fp16)."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


class Encoder:
    """Base class: subclasses set ``info`` and implement ``tokenize``, ``forward`` and
    ``weights_id``; the extractor needs nothing else."""

    info: EncoderInfo
    request: EncoderRequest
    #: settings of the tokenizer that change outputs (recorded in the fingerprint)
    tokenizer_settings: dict
    #: True: ``forward`` gives one [1, dim] vector per sequence (composition baselines), not one
    #: per token; the cache then holds one row per sequence
    per_sequence: bool = False

    _model = None

    @property
    def model(self):
        """The network, loaded on first use (planning and fingerprints never load weights)."""
        if self._model is None:
            self._model = self.load()
        return self._model

    def load(self):
        """Build the network and read its weights (encoders with weights)."""
        raise NotImplementedError

    def prepare(self, sequence: str) -> str:
        """The exact string this encoder sees for a dataset sequence of its modality."""
        return sequence

    def tokenize(self, sequence: str) -> list[int]:
        raise NotImplementedError

    def forward(self, batch: list[list[int]]) -> list[np.ndarray]:
        raise NotImplementedError

    def weights_id(self) -> str:
        """Revision or content hash of the weights (recorded in the fingerprint)."""
        raise NotImplementedError

    # -- what `biofuse finetune` needs of a transformer encoder (None / NotImplementedError for
    #    encoders that cannot be finetuned: one-hot, UniRep)

    #: peft target modules (a regex over module names) of the architecture, or None
    lora_targets: str | None = None

    def pad(self, batch: list[list[int]]):
        """input_ids [B, W] and attention mask [B, W] of ``batch`` with the special tokens added
        (one leading token before each row's ids)."""
        raise NotImplementedError

    def hidden(self, network, input_ids, mask):
        """The stored layer's hidden states [B, W, D] of ``network`` (this encoder's ``model``,
        or a wrapped or finetuned copy of it); differentiable unless the caller disables grad.
        ``mask`` None means no padding."""
        raise NotImplementedError

    def save_pretrained(self, network, path) -> None:
        """Write ``network``'s weights as a model directory this encoder family loads
        (``--model PATH``): config, weights, tokenizer files."""
        raise NotImplementedError

    @property
    def context(self) -> int:
        return self.info.context

    def fingerprint(self) -> Fingerprint:
        r = self.request
        long = {"policy": r.long_policy, "window": self.context,
                "overlap": min(r.window_overlap, self.context - 1) if r.long_policy == "window"
                else 0}  # the overlap actually used (see extract.compute)
        return Fingerprint(model_id=self.info.model_id, revision=self.weights_id(),
                           layer=self.resolved_layer(), compute_dtype=r.dtype,
                           long_policy=f"{long['policy']}:{long['window']}:{long['overlap']}",
                           tokenizer=self.tokenizer_settings, **self.reader_fields())

    def reader_fields(self) -> dict:
        """The typed fingerprint fields a reader of the cache needs."""
        return {"modality": str(self.info.modality), "dim": self.info.dim,
                "nt_per_token": self.info.nt_per_token, "encoder": self.info.name}

    def resolved_layer(self) -> int:
        """The layer as a non-negative index (0 = embeddings, n_layers = last)."""
        n = self.info.n_layers
        layer = self.request.layer
        return n + 1 + layer if layer < 0 else layer


class WeightlessEncoder(Encoder):
    """An encoder with no weights (one-hot, composition): its output depends on nothing but its
    tokenizer settings, so its fingerprint records no revision, layer, dtype or windows."""

    def resolved_layer(self) -> int:
        return 0

    def weights_id(self) -> str:
        return "none"

    def fingerprint(self) -> Fingerprint:
        return Fingerprint(model_id=self.info.model_id, revision="none", layer=0,
                           compute_dtype="none", long_policy="none",
                           tokenizer=self.tokenizer_settings, **self.reader_fields())
