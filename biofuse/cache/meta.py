"""The zarr.json documents of a cache: what biofuse writes (Zarr v3 group and array metadata, as
the spec spells them) and how it reads their attributes back. Every metadata file is replaced
atomically, so a reader sees the old document or the new one, never half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path

#: the attribute of the cache root's zarr.json that makes a directory a biofuse cache
ROOT_ATTR = "biofuse_cache"
#: the attribute of a store's zarr.json that holds its fingerprint
STORE_ATTR = "biofuse"


def write_json_atomic(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(doc):x}.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


def read_group_attrs(path: Path) -> dict | None:
    meta = path / "zarr.json"
    try:
        if not meta.is_file():
            return None
        return json.loads(meta.read_text()).get("attributes", {})
    except (json.JSONDecodeError, OSError):
        return None


def group_doc(attributes: dict) -> dict:
    """The zarr.json document of a Zarr v3 group."""
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes}


def array_doc(shape: list[int], data_type: str, chunk_shape: list[int], fill, codecs: list[dict],
              **extra) -> dict:
    """The zarr.json document of a Zarr v3 array on a regular chunk grid."""
    return {"zarr_format": 3, "node_type": "array", "shape": shape, "data_type": data_type,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunk_shape}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": fill, "codecs": codecs, "attributes": {}, **extra,
            "storage_transformers": []}
