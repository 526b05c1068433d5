"""Finding model files: a local directory, the Hugging Face cache, or the hub, failing fast offline.

Nothing here executes code from a model repository: weights are read from safetensors, or from
PyTorch files with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from functools import cache
from pathlib import Path

from biofuse.errors import BiofuseError
from biofuse.files import read_text

MODEL_FILES = ["config.json", "*.safetensors", "pytorch_model.bin", "vocab.txt",
               "tokenizer_config.json", "special_tokens_map.json"]
HUB_HOST = "huggingface.co"


class ModelError(BiofuseError):
    """A model cannot be found or loaded."""


def _offline_hint(source: str) -> str:
    return (f"Download it once where the hub is reachable (it is then read from the Hugging Face "
            f"cache, HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}), or pass "
            f"--model PATH to a directory holding config.json and the weights of {source}, or "
            "use --model onehot, which needs no weights.")


def _hub_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def local_or_hub(model: str) -> str:
    """An existing directory as its absolute path (so ./m and /abs/m are one model); else as is."""
    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def resolve_model_dir(source: str) -> tuple[Path, str]:
    """Local directory of ``source`` (a directory or a hub id) and its revision label.

    Order: an existing directory; the Hugging Face cache; the hub, only if it answers within a
    few seconds (so an offline machine fails at once, not after a minute of retries).
    """
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} has no config.json, so it is not a model directory.",
                             "Point --model at the folder written by save_pretrained() or "
                             "downloaded from the hub.")
        return path, "local"
    if source.count("/") != 1 or source.startswith((".", "/", "~")):
        raise ModelError(f"--model {source!r} is neither a registered encoder, nor an existing "
                         "directory, nor a hub id (owner/name).",
                         "See `biofuse extract --help` for the registered names.")
    from huggingface_hub import snapshot_download

    try:
        local = snapshot_download(source, local_files_only=True, allow_patterns=MODEL_FILES)
        return Path(local), Path(local).name
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or not _hub_reachable():
        raise ModelError(f"The weights of {source} are not on this machine and the model hub is "
                         "not reachable.", _offline_hint(source))
    try:
        local = snapshot_download(source, allow_patterns=MODEL_FILES)
    except Exception as exc:
        raise ModelError(f"Downloading {source} from the hub failed: {exc}.",
                         _offline_hint(source)) from exc
    return Path(local), Path(local).name


def read_config(model_dir: Path) -> dict:
    """config.json of a model directory: a JSON object, else a ModelError."""
    path = model_dir / "config.json"
    try:
        doc = json.loads(read_text(path, "model config"))
    except (BiofuseError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} cannot be read: {exc}.",
                         "Re-download or re-save the model.") from None
    if not isinstance(doc, dict):
        raise ModelError(f"{path} holds a {type(doc).__name__}, not a model configuration "
                         "(a JSON object).", "Re-download or re-save the model.")
    return doc


def config_int(cfg: dict, key: str, where: Path, default: int | None = None,
               low: int = 1) -> int:
    """A whole-number field of a model's config.json (at least ``low``), else a ModelError."""
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ModelError(f"{where / 'config.json'}: {key} = {value!r} is not a whole number of at "
                         f"least {low}.", "Use the config.json saved with the weights "
                         "(save_pretrained writes both), or a registered encoder name.")
    return value


def read_vocab(model_dir: Path, needed: tuple[str, ...] = ("<cls>", "<pad>")) -> list[str]:
    """vocab.txt of an ESM-architecture model: one token per line, with the special tokens
    biofuse adds to every sequence."""
    path = model_dir / "vocab.txt"
    if not path.exists():
        raise ModelError(f"{model_dir} has no vocab.txt, so its tokens are unknown.",
                         "Copy the vocab.txt that came with the weights into the folder "
                         "(save_pretrained of the tokenizer writes it).")
    try:
        vocab = read_text(path, "vocabulary").split()
    except BiofuseError as exc:
        raise ModelError(exc.problem, "Copy the vocab.txt that came with the weights.") from None
    lacking = [t for t in needed if t not in vocab]
    if lacking or len(vocab) <= len(needed):
        raise ModelError(f"{path} lacks " + (f"the tokens {lacking}" if lacking else
                                               "sequence tokens") + f" ({len(vocab)} tokens).",
                         "Copy the vocab.txt that came with the weights.")
    return vocab


def weights_file(model_dir: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return model_dir / name
    shards = sorted(model_dir.glob("*.safetensors"))
    if shards:
        return shards[0]
    raise ModelError(f"{model_dir} holds no weights (model.safetensors or pytorch_model.bin).",
                     "Re-download the model, or save it with save_pretrained().")


def load_state_dict(model_dir: Path) -> dict:
    """All tensors of the model's weight files, never executing code from them."""
    import torch

    files = sorted(model_dir.glob("*.safetensors"))
    if files:
        from safetensors.torch import load_file

        state = {}
        for f in files:
            try:
                state.update(load_file(str(f)))
            except Exception as exc:  # a damaged or truncated weight file
                raise ModelError(f"The weight file {f} cannot be read ({type(exc).__name__}: "
                                 f"{exc}).", "Re-download or re-save the model "
                                 "(model.safetensors).") from None
        return state
    path = weights_file(model_dir)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickled code, truncation: never retried with weights_only=False
        raise ModelError(
            f"{path} cannot be loaded as plain tensors ({type(exc).__name__}); it may hold "
            "pickled Python objects, which biofuse never executes.",
            "Give biofuse the weights as model.safetensors (transformers' save_pretrained "
            "writes it by default), or a pytorch_model.bin holding only a state dict of "
            "tensors.") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise ModelError(f"{path} holds a {type(state).__name__}, not a state dict of tensors "
                         "(name -> tensor).", "Save the model with save_pretrained(), or "
                         "torch.save(model.state_dict(), ...).")
    return state


@cache
def file_sha256(path: str, size: int, mtime: float) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def weights_hash(model_dir: Path) -> str:
    """SHA-256 over the weight files (memoised per file, size and mtime)."""
    files = sorted(model_dir.glob("*.safetensors")) or [weights_file(model_dir)]
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(file_sha256(str(f), st.st_size, st.st_mtime).encode())
    return h.hexdigest()[:16]
