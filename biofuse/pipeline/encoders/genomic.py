"""Enformer and Borzoi: convolution + attention DNA models whose token is a bin of nucleotides.

IsoFormer's default DNA encoder is Enformer (Avsec et al. 2021; 196,608 bp in, one 3,072-wide
vector per 128-bp bin for the central 896 bins out); Borzoi (Linder et al. 2025; 524,288 bp in,
one vector per 32-bp bin for the central 6,144 bins out) is its third. Both run through their
maintained PyTorch ports, ``enformer-pytorch`` and ``borzoi-pytorch``, whose network code is
installed from the package registry; biofuse builds the network from config.json and reads the
weights itself (safetensors, or ``torch.load(weights_only=True)``), so nothing downloaded runs.

The embedding is the last layer before the species heads: Enformer's trunk output (after its
final pointwise block, 2 x dim = 3,072 features) and Borzoi's ``final_joined_convs`` output
(1,920 features), the features the ports return as "embeddings".

Tokens are bins: ``tokenize`` cuts the DNA into bins from its first nucleotide (the last one
filled with N, the all-zero one-hot) and packs each bin's letters into one integer id, so the
extractor windows, batches and stitches bins like any encoder's tokens. ``forward`` unpacks a
window's bins, places them in the middle of one model input (bin-aligned, N around them), runs
the model and keeps the output bins that hold them. A window is at most the model's output
span (Enformer 896 bins = 114,688 bp); longer sequences follow ``--long``. Every forward reads a
whole model input however short the sequence, so each window counts as a full input in the
token budget (``n_specials``).

config.json may carry ``input_length`` (nucleotides one forward reads); by default the model's
published flank of context is kept on each side of its output span (Enformer 40,960 bp,
Borzoi 163,840 bp). Tiny test models set it small.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from biofuse.modality import Modality
from biofuse.pipeline.encoders.base import Encoder, EncoderInfo, EncoderRequest, torch_dtype
from biofuse.pipeline.encoders.hub import (
    ModelError,
    config_int,
    load_state_dict,
    local_or_hub,
    read_config,
    resolve_model_dir,
    weights_hash,
)

#: one-hot column of each letter (A, C, G, T); anything else (N, IUPAC codes) is all zero
_ONEHOT = np.zeros((256, 4), dtype=np.float32)
for _i, _c in enumerate("ACGT"):
    _ONEHOT[ord(_c), _i] = _ONEHOT[ord(_c.lower()), _i] = 1.0
INSTALL = ("pip install 'biofuse-ml[enformer]' && pip install --no-deps enformer-pytorch==0.8.12 "
           "borzoi-pytorch==0.5.1 (the ports pin transformers versions that conflict with each "
           "other and with biofuse's; --no-deps keeps yours)")


@dataclass(frozen=True)
class Architecture:
    """What differs between the two families."""

    family: str  # the model_type in config.json
    package: str  # the port's import name
    cls: str  # its model class (a transformers PreTrainedModel; its config_class is used too)
    bin: int  # nucleotides per output token
    flank: int  # nucleotides of context each side of the output span, by default

    def load_classes(self):
        try:
            module = importlib.import_module(self.package)
        except ImportError as exc:
            raise ModelError(f"The {self.family} encoder needs the {self.package} package, which "
                             f"cannot be imported ({exc}).", INSTALL) from None
        model_class = getattr(module, self.cls)
        return model_class, model_class.config_class


ARCHITECTURES = {
    "enformer": Architecture("enformer", "enformer_pytorch", "Enformer", 128, 320 * 128),
    "borzoi": Architecture("borzoi", "borzoi_pytorch", "Borzoi", 32, 5120 * 32),
}
#: the registered hub weights (EleutherAI's port of DeepMind's Enformer; Calico's Borzoi ported
#: by its authors), and what enformer-pytorch's own ``from_pretrained`` sets for the former
ENFORMER_HUB, BORZOI_HUB = "EleutherAI/enformer-official-rough", "johahi/borzoi-replicate-0"
INFOS = [
    EncoderInfo("enformer", Modality.DNA, "enformer", ENFORMER_HUB, 3072, 1, 128, 896,
                extra="enformer", description="Enformer trunk (one 3,072-wide token per 128-bp "
                "bin; IsoFormer's DNA encoder)"),
    EncoderInfo("borzoi", Modality.DNA, "borzoi", BORZOI_HUB, 1920, 1, 32, 6144,
                extra="enformer", description="Borzoi (replicate 0; one 1,920-wide token per "
                "32-bp bin)"),
]


def with_aliases(state: dict, model) -> dict:
    """``state`` with every tensor also under the other names ``model`` gives it. Both ports
    reach their layers under two names (Enformer's ``stem.*`` is also ``_trunk.1.*``); a
    safetensors file keeps one name of each pair, an old pytorch_model.bin both."""
    names: dict[int, list[str]] = {}
    for k, t in [*model.named_parameters(remove_duplicate=False),
                 *model.named_buffers(remove_duplicate=False)]:
        names.setdefault(id(t), []).append(k)
    out = dict(state)
    for group in names.values():
        saved = next((k for k in group if k in state), None)
        if saved is not None:
            out.update({k: state[saved] for k in group if k not in state})
    return out


def pack(letters: str) -> int:
    """One bin's letters as one integer id (its bytes, big-endian)."""
    return int.from_bytes(letters.encode("ascii", "replace"), "big")


def unpack(token: int, size: int) -> bytes:
    return token.to_bytes(size, "big")


class BinnedDnaEncoder(Encoder):
    """Enformer or Borzoi from a registered name, a local directory or a hub id."""

    def __init__(self, request: EncoderRequest, info: EncoderInfo | None, family: str):
        import torch

        self.request = request
        self.arch = ARCHITECTURES[family]
        if Modality.parse(request.modality) != Modality.DNA:
            raise ModelError(f"{family} embeds DNA, not {request.modality}.",
                             "Use it with --modality dna.")
        if request.trust_remote_code:
            raise ModelError(f"--trust-remote-code is not needed for {family}.",
                             f"biofuse builds {family} from the installed {self.arch.package}; "
                             "drop the flag.")
        self.model_class, self.config_class = self.arch.load_classes()
        source = info.source if info else local_or_hub(request.model)
        self.source = str(source)
        self.model_dir, revision = resolve_model_dir(self.source)
        cfg = read_config(self.model_dir)
        try:
            self.config = self.config_class(**{k: v for k, v in cfg.items()
                                               if k not in ("architectures", "model_type")})
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{self.model_dir}/config.json is not a {family} configuration "
                             f"({exc}).", "Use the config.json saved with the weights.") from None
        where = self.model_dir
        if family == "enformer":
            self.bin = 2 ** config_int(cfg, "num_downsamples", where, 7)
            out_bins = config_int(cfg, "target_length", where, 896)
            dim = 2 * config_int(cfg, "dim", where, 1536)
        else:
            self.bin = self.arch.bin
            out_bins = (config_int(cfg, "bins_to_return", where, 6144)
                        if cfg.get("return_center_bins_only", True) else 16384 - 32)
            dim = 1920
        self.out_bins = out_bins
        self.input_length = config_int(cfg, "input_length", where,
                                       out_bins * self.bin + 2 * self.arch.flank)
        flank = self.input_length - out_bins * self.bin
        if flank < 0 or flank % (2 * self.bin) or self.input_length % 128:
            raise ModelError(
                f"{self.model_dir}/config.json: input_length {self.input_length} does not hold "
                f"the {out_bins} output bins of {self.bin} bp with equal bin-aligned context on "
                "both sides (and a multiple of 128 bp).",
                f"Use input_length = {out_bins * self.bin} + 2 x a multiple of {self.bin}, or "
                "leave it out for the published context.")
        self.flank_bins = flank // (2 * self.bin)
        self.info = EncoderInfo(**{**(info or EncoderInfo(
            name=self.source, modality=Modality.DNA, family=family, source=self.source, dim=dim,
            n_layers=1, nt_per_token=self.bin, context=out_bins, extra="enformer",
            description=family)).__dict__, "dim": dim, "nt_per_token": self.bin,
            "context": out_bins})
        if self.resolved_layer() != 1:
            raise ModelError(f"--layer {request.layer}: biofuse stores {family}'s last layer "
                             "before its species heads only.", "Leave --layer out (or -1).")
        self.revision = revision if revision != "local" else weights_hash(self.model_dir)
        self.tokenizer_settings = {"bin": self.bin, "input_length": self.input_length,
                                   "placement": "centre, bin-aligned, N-padded"}
        #: every window costs one whole model input (see the module docstring)
        self.n_specials = self.input_length // self.bin
        self.device = torch.device(request.device)

    def weights_id(self) -> str:
        return self.revision

    def load(self):

        try:
            model = self.model_class(self.config)
        except (TypeError, ValueError, ZeroDivisionError, RuntimeError) as exc:
            raise ModelError(f"{self.model_dir}/config.json does not describe a complete "
                             f"{self.arch.family} ({type(exc).__name__}: {exc}).",
                             "Use the config.json saved with the weights, or a registered "
                             "encoder name.") from None
        if self.arch.family == "enformer" and self.source == ENFORMER_HUB:
            for module in model.modules():  # what enformer_pytorch.from_pretrained sets
                if hasattr(module, "use_tf_gamma"):
                    module.use_tf_gamma = True
        state = with_aliases(load_state_dict(self.model_dir), model)
        wanted = model.state_dict()
        missing = [k for k in wanted if k not in state]
        bad = [k for k in wanted if k in state and state[k].shape != wanted[k].shape]
        if missing or bad:
            raise ModelError(f"The weights in {self.model_dir} do not fit the {self.arch.family} "
                             f"in its config.json: {len(missing)} tensors missing, {len(bad)} "
                             f"of another shape, e.g. {(missing + bad)[:3]}.",
                             "Check that the directory holds one complete checkpoint and the "
                             "config.json saved with it.")
        model.load_state_dict({k: v for k, v in state.items() if k in wanted})
        return model.to(self.device, dtype=torch_dtype(self.request.dtype)).eval()

    def tokenize(self, sequence: str) -> list[int]:
        b = self.bin
        padded = sequence + "N" * ((-len(sequence)) % b)
        return [pack(padded[i:i + b]) for i in range(0, len(padded), b)]

    def onehot(self, batch: list[list[int]]) -> tuple[np.ndarray, list[int]]:
        """The model inputs [B, input_length, 4] of ``batch`` and where each window's bins
        start among the output bins."""
        x = np.zeros((len(batch), self.input_length, 4), dtype=np.float32)
        starts = []
        for i, ids in enumerate(batch):
            at = (self.out_bins - len(ids)) // 2
            letters = b"".join(unpack(t, self.bin) for t in ids)
            begin = (self.flank_bins + at) * self.bin
            x[i, begin:begin + len(letters)] = _ONEHOT[np.frombuffer(letters, dtype=np.uint8)]
            starts.append(at)
        return x, starts

    def embed(self, x):
        """The stored features [B, out_bins, dim] of one-hot inputs x [B, L, 4]."""
        if self.arch.family == "enformer":
            return self.model(x, return_only_embeddings=True)
        h = self.model.get_embs_after_crop(x.transpose(1, 2))
        return self.model.final_joined_convs(h).transpose(1, 2)

    def forward(self, batch: list[list[int]]) -> list[np.ndarray]:
        import torch

        x, starts = self.onehot(batch)
        with torch.inference_mode():
            inputs = torch.from_numpy(x).to(self.device, torch_dtype(self.request.dtype))
            out = self.embed(inputs).float().cpu().numpy()
        return [out[i, a:a + len(ids)] for i, (a, ids) in enumerate(zip(starts, batch))]
