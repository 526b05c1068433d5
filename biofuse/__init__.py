"""biofuse: fuse frozen embeddings of pretrained DNA, RNA and protein language models.

The Python API (see ``biofuse.api`` and docs/api.md)::

    import biofuse
    ds = biofuse.load_dataset("data.csv")
    biofuse.extract(ds, modality="all", model="onehot", cache="cache")
    result = biofuse.fit(ds, fusion="mil", cache="cache", out="runs/mil", ...)
"""

from biofuse.version import __version__

_API = ("load_dataset", "extract", "fit", "finetune", "predict", "embeddings", "plan", "run",
        "report", "demo", "Embeddings")
__all__ = [*_API, "Modality", "__version__"]


def __getattr__(name: str):
    """Import the API on first use, so `biofuse --help` does not pay for torch."""
    if name in _API:
        from biofuse import api

        return getattr(api, name)
    if name == "Modality":
        from biofuse.modality import Modality

        return Modality
    raise AttributeError(f"module 'biofuse' has no attribute {name!r}")
