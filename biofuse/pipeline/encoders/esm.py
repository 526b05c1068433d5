"""ESM-architecture transformers: ESM-2 (protein), Nucleotide Transformer v1 and v2 (DNA), and
any local or hub ESM-architecture masked LM (``--model PATH_OR_ID``).

Nucleotide Transformer v2 differs from transformers' ESM in one place: its feed-forward block is
a bias-free SwiGLU (project to twice the intermediate width, split, ``silu(a) * b``, project back
without bias). Its weights are published with custom modelling code; biofuse implements that
difference itself (``GatedFeedForward``) and loads the published weights into it, so no
downloaded code runs unless ``--trust-remote-code`` is given.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from biofuse.modality import Modality
from biofuse.pipeline.encoders.base import (
    BERT_LORA_TARGETS,
    Encoder,
    EncoderInfo,
    EncoderRequest,
    torch_dtype,
)
from biofuse.pipeline.encoders.hub import (
    ModelError,
    config_int,
    load_state_dict,
    local_or_hub,
    read_config,
    read_vocab,
    resolve_model_dir,
    weights_hash,
)


class KmerTokenizer:
    """Vocabulary-driven tokenizer without special tokens.

    Protein models: one token per letter. Nucleotide Transformer: non-overlapping k-mers from the
    left; where a k-mer is not in the vocabulary (it holds an N, or fewer than k bases are left),
    single-base tokens until a k-mer fits again. Unknown letters become ``<unk>``.
    """

    def __init__(self, vocab: list[str], k: int, replace: dict[str, str] | None = None):
        self.vocab = {t: i for i, t in enumerate(vocab)}
        self.k = k
        self.replace = replace or {}
        self.unk = self.vocab.get("<unk>", 0)
        self.cls = self.vocab.get("<cls>")
        self.eos = self.vocab.get("<eos>")
        self.pad = self.vocab.get("<pad>", 1)

    def __call__(self, seq: str) -> list[int]:
        if self.replace:
            seq = "".join(self.replace.get(c, c) for c in seq)
        v, k, unk = self.vocab, self.k, self.unk
        if k == 1:
            return [v.get(c, unk) for c in seq]
        out, i, n = [], 0, len(seq)
        while i < n:
            tok = v.get(seq[i:i + k]) if i + k <= n else None
            if tok is not None:
                out.append(tok)
                i += k
            else:
                out.append(v.get(seq[i], unk))
                i += 1
        return out


def gated_feed_forward(config):
    """Nucleotide Transformer v2's feed-forward halves: (intermediate, output dense)."""
    import torch
    from torch import nn

    class GatedFeedForward(nn.Module):
        """x -> silu(a) * b, where [a, b] = W x (no bias when add_bias_fnn is false)."""

        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(config.hidden_size, 2 * config.intermediate_size,
                                   bias=getattr(config, "add_bias_fnn", True))

        def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
            a, b = self.dense(hidden_states).chunk(2, dim=-1)  # [B, T, inter] each
            return nn.functional.silu(a) * b

    out = nn.Linear(config.intermediate_size, config.hidden_size,
                    bias=getattr(config, "add_bias_fnn", True))
    return GatedFeedForward(), out


def fused_gelu_intermediate(dense):
    """ESM-2's intermediate block (``dense`` then exact erf GELU) with PyTorch's one-kernel GELU.

    transformers spells the GELU as five tensor ops (``x * 0.5 * (1 + erf(x / sqrt 2))``); the
    fused kernel computes the same function (fp32 outputs differ by <= 2.4e-6, bf16 ones are
    rounded once instead of five times) and makes the whole forward 5-16% faster on CPU
    (measured on random-init ESM-2 8M and 35M, fp32 and bf16). The weights keep their names.
    """
    import torch
    from torch import nn

    class GeluIntermediate(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = dense

        def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
            return nn.functional.gelu(self.dense(hidden_states))

    return GeluIntermediate()


def is_gated(cfg: dict) -> bool:
    """NT v2 checkpoints say add_bias_fnn=false (and ship SwiGLU weights twice as wide)."""
    return cfg.get("add_bias_fnn") is False


def _skip_init():
    """Context in which transformers skips random weight init (weights are loaded right after)."""
    try:
        from transformers.initialization import no_init_weights  # transformers >= 5
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights  # transformers 4
        except ImportError:
            import contextlib

            return contextlib.nullcontext()
    return no_init_weights()


def build_esm(cfg: dict, layer: int, *, init: bool = True):
    """transformers' EsmModel for ``cfg``, NT-v2 gated where needed, truncated after ``layer``.
    ``init=False`` skips the random initialisation (a 150M model spends seconds on it) for a
    model whose weights are loaded next."""
    if not init:
        with _skip_init():
            return build_esm(cfg, layer)
    from transformers import EsmConfig, EsmModel

    known = EsmConfig().to_dict()
    config = EsmConfig(**{k: v for k, v in cfg.items() if k in known or k == "add_bias_fnn"})
    config.is_folding_model = False
    # PyTorch's fused attention; a model built from a config would otherwise default to the
    # eager implementation, 3x slower on padded batches (measured in bench/extract_bench.py)
    config._attn_implementation = "sdpa"
    model = EsmModel(config, add_pooling_layer=False)
    for block in model.encoder.layer:
        if is_gated(cfg):
            block.intermediate, block.output.dense = gated_feed_forward(config)
        else:
            block.intermediate = fused_gelu_intermediate(block.intermediate.dense)
    n_layers = config.num_hidden_layers
    if layer < n_layers:  # later layers are never run; the final layer norm belongs to the last
        model.encoder.layer = model.encoder.layer[:layer]
        model.encoder.emb_layer_norm_after = None
    return model, config


class EsmFamilyEncoder(Encoder):
    """Any ESM-architecture model from a local directory or the hub."""

    def __init__(self, request: EncoderRequest, info: EncoderInfo | None = None):
        import torch

        self.request = request
        source = info.source if info else local_or_hub(request.model)
        if request.trust_remote_code:
            raise ModelError("--trust-remote-code is not needed for ESM-architecture models.",
                             "biofuse implements them itself; drop the flag.")
        self.model_dir, revision = resolve_model_dir(source)
        cfg = read_config(self.model_dir)
        if "hidden_size" not in cfg or not cfg.get("num_hidden_layers"):
            raise ModelError(f"{self.model_dir}/config.json does not describe an "
                             "ESM-architecture model (no hidden_size / num_hidden_layers).",
                             "Use a registered encoder name, or an ESM-2 / Nucleotide "
                             "Transformer checkpoint.")
        n_layers = config_int(cfg, "num_hidden_layers", self.model_dir)
        config_int(cfg, "hidden_size", self.model_dir)
        vocab = read_vocab(self.model_dir)
        kmer = max((len(t) for t in vocab if t.isalpha() and t.isupper()), default=1)
        modality = info.modality if info else request.modality
        # two positions hold the special tokens; a sequence needs at least two of its own
        context = config_int(cfg, "max_position_embeddings", self.model_dir, 1026, low=4) - 2
        self.info = info or EncoderInfo(
            name=str(source), modality=modality, family="esm", source=str(source),
            dim=int(cfg["hidden_size"]), n_layers=n_layers, nt_per_token=3 if modality == Modality.PROTEIN
            else kmer, context=context, description="ESM-architecture model")
        self.info = EncoderInfo(**{**self.info.__dict__, "dim": int(cfg["hidden_size"]),
                                   "n_layers": n_layers})
        layer = self.resolved_layer()
        if not 0 <= layer <= n_layers:
            raise ModelError(f"--layer {request.layer} is out of range for {source}, which has "
                             f"{n_layers} layers.", f"Use 0..{n_layers}, or -1 for the last.")
        self.revision = revision if revision != "local" else weights_hash(self.model_dir)
        special = _special_tokens(self.model_dir)
        replace = {"*": "X"} if modality == Modality.PROTEIN else {}
        self.tokenizer = KmerTokenizer(vocab, kmer, replace)
        # ESM-2 wraps a protein in <cls> ... <eos>; Nucleotide Transformer prepends <cls> only,
        # unless the model's own tokenizer files declare an end token.
        default_eos = "<eos>" if modality == Modality.PROTEIN else None
        self.add_eos = (self.tokenizer.eos is not None
                        and special.get("eos_token", default_eos) is not None)
        self.tokenizer_settings = {"vocab_size": len(vocab), "k": kmer, "cls": True,
                                   "eos": self.add_eos, "replace": replace}
        self.n_specials = 1 + int(self.add_eos)
        self._cfg, self._layer = cfg, layer
        self.device = torch.device(request.device)

    def load(self):
        try:
            model, _ = build_esm(self._cfg, self._layer, init=False)
        except (TypeError, ValueError, KeyError) as exc:
            raise ModelError(f"{self.model_dir}/config.json does not describe a complete "
                             f"ESM-architecture model ({type(exc).__name__}: {exc}).",
                             "Use the config.json saved with the weights (save_pretrained writes "
                             "both), or a registered encoder name.") from None
        state = {_canonical_key(k): v for k, v in load_state_dict(self.model_dir).items()}
        wanted = model.state_dict()
        missing = [k for k in wanted if k not in state and not k.endswith("position_ids")
                   and "inv_freq" not in k]
        if missing:
            raise ModelError(f"The weights in {self.model_dir} do not fit the architecture in its "
                             f"config.json: {len(missing)} tensors missing, e.g. {missing[:3]}.",
                             "Check that the directory holds one complete checkpoint.")
        bad = [k for k in wanted if k in state and state[k].shape != wanted[k].shape]
        if bad:
            raise ModelError(f"Weight shapes in {self.model_dir} do not match its config: "
                             f"{bad[:3]}.", "The checkpoint and config.json disagree.")
        model.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=False)
        return model.to(self.device, dtype=torch_dtype(self.request.dtype)).eval()

    @property
    def context(self) -> int:
        return self.info.context

    def weights_id(self) -> str:
        return self.revision

    def tokenize(self, sequence: str) -> list[int]:
        return self.tokenizer(sequence)

    def pad(self, batch: list[list[int]]):
        import torch

        tok = self.tokenizer
        width = max(len(ids) for ids in batch) + self.n_specials
        input_ids = torch.full((len(batch), width), tok.pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, ids in enumerate(batch):
            row = [tok.cls, *ids] + ([tok.eos] if self.add_eos else [])
            input_ids[i, :len(row)] = torch.tensor(row)
            mask[i, :len(row)] = 1
        return input_ids, mask

    def hidden(self, network, input_ids, mask):
        return network(input_ids=input_ids, attention_mask=mask).last_hidden_state

    def forward(self, batch: list[list[int]]) -> list[np.ndarray]:
        import torch

        input_ids, mask = self.pad(batch)
        # Without padding, no mask: PyTorch's fused attention then runs its fast kernel instead
        # of materialising [B, heads, T, T] scores (several times faster on CPU).
        padded = bool((mask == 0).any())
        with torch.inference_mode():
            hidden = self.hidden(self.model, input_ids.to(self.device),
                                 mask.to(self.device) if padded else None)
            hidden = hidden.float().cpu().numpy()  # [B, width, dim]
        return [hidden[i, 1:1 + len(ids)] for i, ids in enumerate(batch)]

    lora_targets = BERT_LORA_TARGETS

    def save_pretrained(self, network, path) -> None:
        """config.json (the base model's, for the layers kept), model.safetensors, and the
        tokenizer files: a directory ``EsmFamilyEncoder`` loads like the base model."""
        import shutil

        from safetensors.torch import save_file

        if self._layer < int(self._cfg["num_hidden_layers"]):
            raise ModelError("Only an encoder that ends at its last layer can be saved.",
                             "Finetune with the default --layer -1.")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().float().contiguous() for k, v in network.state_dict().items()
                 if "inv_freq" not in k and "position_ids" not in k}
        save_file(state, str(path / "model.safetensors"))
        cfg = {k: v for k, v in self._cfg.items() if k not in ("auto_map", "architectures")}
        (path / "config.json").write_text(json.dumps({**cfg, "architectures": ["EsmModel"]},
                                                     indent=2))
        for name in ("vocab.txt", "special_tokens_map.json", "tokenizer_config.json"):
            if (self.model_dir / name).is_file():
                shutil.copyfile(self.model_dir / name, path / name)


def _canonical_key(key: str) -> str:
    """Checkpoint tensor name -> EsmModel's: no ``esm.`` prefix; LayerNorm ``gamma``/``beta``
    (the legacy names transformers still writes) -> ``weight``/``bias``."""
    key = key.removeprefix("esm.")
    if key.endswith(".gamma"):
        return key[:-6] + ".weight"
    if key.endswith(".beta"):
        return key[:-5] + ".bias"
    return key


def _special_tokens(model_dir: Path) -> dict:
    out: dict = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        f = model_dir / name
        if f.is_file():
            try:
                d = json.loads(f.read_text())
            except json.JSONDecodeError:
                continue
            for key in ("eos_token", "cls_token"):
                if key in d:
                    v = d[key]
                    out[key] = v.get("content") if isinstance(v, dict) else v
    return out
