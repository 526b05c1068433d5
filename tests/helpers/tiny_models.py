"""Tiny random models of the real architectures, saved in their published on-disk formats, so the
real loading path runs with no network."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

ESM2_VOCAB = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO.-", "<null_1>",
              "<mask>"]
NT_VOCAB = (["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]
            + ["".join(p) for p in itertools.product("ATCG", repeat=6)] + list("ATCGN"))


def save_tiny_esm2(path: Path, *, layers: int = 2, dim: int = 16, seed: int = 0,
                   context: int = 64) -> Path:
    """An ESM-2-architecture EsmForMaskedLM, saved with save_pretrained (safetensors)."""
    import torch
    from transformers import EsmConfig, EsmForMaskedLM

    torch.manual_seed(seed)
    config = EsmConfig(vocab_size=len(ESM2_VOCAB), hidden_size=dim, num_hidden_layers=layers,
                       num_attention_heads=2, intermediate_size=2 * dim,
                       max_position_embeddings=context + 2, position_embedding_type="rotary",
                       token_dropout=True, emb_layer_norm_before=False, pad_token_id=1,
                       mask_token_id=32, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0)
    EsmForMaskedLM(config).save_pretrained(path)
    (path / "vocab.txt").write_text("\n".join(ESM2_VOCAB) + "\n")
    return path


def nt_v2_config(*, layers: int = 2, dim: int = 16, context: int = 64) -> dict:
    """A config.json in the form the Nucleotide Transformer v2 checkpoints are published in."""
    return {"architectures": ["EsmForMaskedLM"],
            "auto_map": {"AutoConfig": "esm_config.EsmConfig",
                         "AutoModelForMaskedLM": "modeling_esm.EsmForMaskedLM"},
            "add_bias_fnn": False, "attention_probs_dropout_prob": 0.0,
            "emb_layer_norm_before": False, "hidden_dropout_prob": 0.0, "hidden_size": dim,
            "intermediate_size": 2 * dim, "layer_norm_eps": 1e-12, "mask_token_id": 2,
            "max_position_embeddings": context + 2, "num_attention_heads": 2,
            "num_hidden_layers": layers, "pad_token_id": 1, "position_embedding_type": "rotary",
            "tie_word_embeddings": False, "token_dropout": False, "vocab_size": len(NT_VOCAB)}


def save_tiny_nt_v2(path: Path, *, seed: int = 0, **kw) -> Path:
    """Random weights of the NT-v2 architecture (gated, bias-free FFN) under the published
    parameter names (``esm.`` prefix, SwiGLU weight twice as wide), in model.safetensors."""
    import torch
    from safetensors.torch import save_file

    from biofuse.pipeline.encoders.esm import build_esm

    cfg = nt_v2_config(**kw)
    torch.manual_seed(seed)
    model, _ = build_esm(cfg, cfg["num_hidden_layers"])
    for p in model.parameters():  # random, not the tiny init, so every path is exercised
        torch.nn.init.normal_(p, std=0.2)
    path.mkdir(parents=True, exist_ok=True)
    state = {f"esm.{k}": v.contiguous() for k, v in model.state_dict().items()
             if "inv_freq" not in k and "position_ids" not in k}
    save_file(state, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    (path / "vocab.txt").write_text("\n".join(NT_VOCAB) + "\n")
    return path


def save_tiny_rnafm(path: Path, *, layers: int = 2, dim: int = 16, seed: int = 0) -> Path:
    """A multimolecule RNA-FM model and its tokenizer, saved with save_pretrained."""
    import torch
    from multimolecule import RnaFmConfig, RnaFmModel, RnaTokenizer

    torch.manual_seed(seed)
    config = RnaFmConfig(hidden_size=dim, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=2 * dim, max_position_embeddings=66,
                         hidden_dropout=0.0, attention_dropout=0.0)
    RnaFmModel(config, add_pooling_layer=False).save_pretrained(path)
    RnaTokenizer().save_pretrained(path)
    return path


def _save_port_model(model, path: Path, *, pickle_bin: bool = False) -> Path:
    """config.json (with input_length) and the weights: model.safetensors (shared tensors kept
    under one name, as transformers writes it), or a pytorch_model.bin state dict with every
    name (as the hub's older Enformer port holds it)."""
    import torch
    from safetensors.torch import save_model

    path.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(str(path / "config.json"))
    if pickle_bin:
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    else:
        save_model(model, str(path / "model.safetensors"))
    return path


def tiny_enformer(*, seed: int = 0, target_length: int = 8, flank_bins: int = 4):
    """A random Enformer of the real architecture (128-bp bins), small: dim 48 (its relative
    positions need dim / heads divisible by 6), one layer."""
    import torch
    from enformer_pytorch import Enformer

    torch.manual_seed(seed)
    return Enformer.from_hparams(dim=48, depth=1, heads=2, output_heads={"human": 4},
                                 target_length=target_length, num_downsamples=7,
                                 dim_divisible_by=8,
                                 input_length=(target_length + 2 * flank_bins) * 128).eval()


def save_tiny_enformer(path: Path, *, pickle_bin: bool = False, **kw) -> Path:
    return _save_port_model(tiny_enformer(**kw), path, pickle_bin=pickle_bin)


def tiny_borzoi(*, seed: int = 0, bins: int = 8, flank_bins: int = 8):
    """A random Borzoi of the real architecture (32-bp bins; its convolution tower keeps the
    published widths), with a 32-wide single-layer transformer and no species heads."""
    import torch
    from borzoi_pytorch import Borzoi

    torch.manual_seed(seed)
    return Borzoi.from_hparams(dim=32, depth=1, heads=2, attn_dim_key=8, attn_dim_value=16,
                               bins_to_return=bins, enable_human_head=False,
                               input_length=(bins + 2 * flank_bins) * 32).eval()


def save_tiny_borzoi(path: Path, **kw) -> Path:
    return _save_port_model(tiny_borzoi(**kw), path)
