"""Looking after a cache: info, verify, gc (temps, damaged parts, compaction) and export."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from biofuse.cache.parts import read_part_index
from biofuse.cache.root import EmbeddingCache
from biofuse.cache.store import SCRATCH, EmbeddingStore
from biofuse.errors import CacheError
from biofuse.files import disk_error, du, real_subdirs, remove_tree, write_atomic

VERIFY_BLOCK_BYTES = 64 << 20


def _tmp_dirs(store: EmbeddingStore) -> list[Path]:
    """Uncommitted parts and leftovers of removals; a tmp/ or trash/ that is a link to
    elsewhere is not looked into (``gc`` replaces the link with a folder)."""
    return [p for d in SCRATCH for p in real_subdirs(store.path / d)]


# ------------------------------------------------------------------------- info

def store_info(store: EmbeddingStore) -> dict:
    fp = store.fingerprint
    stored = sum(int(p.attrs["n_sequences"]) for p in store.parts)
    tokens = sum(p.n_tokens for p in store.parts)
    itemsize = np.dtype(store.dtype).itemsize
    raw = tokens * (store.dim or 0) * itemsize
    disk = du(store.path / "parts")
    temps = _tmp_dirs(store)
    return {"id": store.id, "model_id": fp.model_id, "revision": fp.revision, "layer": fp.layer,
            "compute_dtype": fp.compute_dtype, "long_policy": fp.long_policy,
            "storage_dtype": fp.storage_dtype,
            "fingerprint": fp.to_dict(), "dim": store.dim, "parts": len(store.parts),
            "entries": len(store), "duplicate_entries": stored - len(store), "tokens": tokens,
            "raw_bytes": raw, "bytes_on_disk": disk,
            "disk_vs_raw": round(disk / raw, 4) if raw else None,
            "uncommitted_parts": len(temps), "uncommitted_bytes": sum(du(p) for p in temps),
            "damaged_parts": len(store.damaged)}


# ------------------------------------------------------------------------- verify

@dataclass
class VerifyReport:
    store: str
    parts_checked: int = 0
    entries: int = 0
    damaged: dict[str, str] = field(default_factory=dict)  # part id -> problem
    uncommitted_parts: int = 0

    @property
    def ok(self) -> bool:
        return not self.damaged


def verify_store(store: EmbeddingStore, *, data: bool = True) -> VerifyReport:
    """Check every committed part: index, metadata, files present, every chunk decodes (crc32c),
    no NaN/Inf. ``data=False`` checks everything but the chunk contents (fast)."""
    report = VerifyReport(store.id, uncommitted_parts=len(_tmp_dirs(store)))
    dim = None
    for path in store.part_dirs():
        report.parts_checked += 1
        try:
            index = read_part_index(path)
            report.entries += len(index.keys)
            dim = dim if dim is not None else index.attrs["dim"]
            _check_part(index, dim, store.dtype, data)
        except Exception as exc:  # any failure is a finding about this part, not a crash
            report.damaged[path.name] = f"{type(exc).__name__}: {exc}" if not isinstance(
                exc, ValueError) else str(exc)
    return report


def _check_part(index, dim: int, dtype: str, data: bool) -> None:
    arr = zarr.open_array(str(index.path / "embeddings"), mode="r")
    if arr.shape != (index.n_tokens, dim):
        raise ValueError(f"embeddings have shape {arr.shape}, expected ({index.n_tokens}, {dim})")
    if arr.dtype != np.dtype(dtype):
        raise ValueError(f"embeddings are {arr.dtype}, the store holds {dtype}")
    outer = arr.shards or arr.chunks
    n_files = -(-arr.shape[0] // outer[0]) if arr.shape[0] else 0
    for i in range(n_files):
        if not (index.path / "embeddings" / "c" / str(i) / "0").is_file():
            raise ValueError(f"chunk file c/{i}/0 of the embeddings is missing")
    if not data or arr.shape[0] == 0:
        return
    step = max(arr.chunks[0], VERIFY_BLOCK_BYTES // max(1, dim * arr.dtype.itemsize))
    step -= step % arr.chunks[0]
    for lo in range(0, arr.shape[0], step):
        block = arr[lo:lo + step]
        if not np.isfinite(block).all():
            raise ValueError(f"tokens {lo}..{lo + len(block)} hold NaN/Inf (missing or damaged chunk)")


# ------------------------------------------------------------------------- gc

@dataclass
class GcReport:
    store: str
    temps_removed: int = 0
    bytes_freed: int = 0
    damaged_removed: int = 0
    parts_before: int = 0
    parts_after: int = 0
    links_replaced: list[str] = field(default_factory=list)  # tmp/ or trash/ that were links
    skipped: str | None = None  # why the store was left alone


def gc_store(store: EmbeddingStore, *, min_age_s: float = 3600.0, drop_corrupt: bool = False,
             compact: bool = False, part_bytes: int = 256 << 20) -> GcReport:
    """Remove temps older than ``min_age_s`` (younger ones may belong to a running writer),
    optionally damaged parts, and optionally rewrite all parts into few large ones."""
    store.require_writable("garbage-collect")
    report = GcReport(store.id, parts_before=len(store.part_dirs()))
    if not store.is_own_folder():
        report.skipped = (f"{store.path} is a link to {store.path.resolve()}; gc cleans a store "
                          "only in its own folder (run it on the cache the link points into)")
        return report
    report.links_replaced = store.own_scratch()
    now = time.time()
    for path in _tmp_dirs(store):
        if now - path.lstat().st_mtime >= min_age_s:
            report.bytes_freed += remove_tree(store.path, path)
            report.temps_removed += 1
    if drop_corrupt:
        damaged = verify_store(store).damaged
        report.damaged_removed = store.remove_parts(damaged)
    if compact:
        compact_store(store, part_bytes)
    report.parts_after = len(store.part_dirs())
    return report


def compact_store(store: EmbeddingStore, part_bytes: int = 256 << 20) -> None:
    """Rewrite the winning entry of every key into new parts, then remove the old parts.

    Safe against crashes (old parts win ties until they are removed) and against concurrent
    writers (parts committed meanwhile are not touched). Readers holding an index of the old parts
    re-read the directory once when a part vanishes.
    """
    store.refresh()
    old = [p.part_id for p in store.parts]
    if len(old) <= 1:
        return
    keys = store.keys()
    with store.writer(part_bytes) as writer:
        for start in range(0, len(keys), 4096):
            batch = keys[start:start + 4096]
            ragged = store.load(batch)
            for i, k in enumerate(batch):
                writer.add(k, ragged[i])
    store.remove_parts(old)


# ------------------------------------------------------------------------- export

def export_store(store: EmbeddingStore, keys: Sequence[str] | None, out: Path, fmt: str,
                 batch: int = 1024) -> int:
    """Write embeddings to plain files: ``npz`` (one array per key) or ``parquet`` (one row per
    sequence: key, n_tokens, embedding as a list of per-token float32 vectors)."""
    keys = list(store.keys() if keys is None else keys)
    if fmt == "npz":
        ragged = store.load(keys)
        write_atomic(out, lambda f: np.savez(f, **{k: ragged[i] for i, k in enumerate(keys)}))
        return len(keys)
    if fmt != "parquet":
        raise CacheError(f"Unknown export format {fmt!r}.", "Use npz or parquet.")
    import pyarrow as pa
    import pyarrow.parquet as pq

    dim = store.dim or 0
    schema = pa.schema([("key", pa.string()), ("n_tokens", pa.int64()),
                        ("embedding", pa.list_(pa.list_(pa.float32(), dim)))])
    tmp = out.with_name(f".{out.name}.tmp")  # streamed (it can be large), then renamed
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for start in range(0, len(keys), batch):
                part = keys[start:start + batch]
                ragged = store.load(part, dtype="float32")
                tokens = pa.FixedSizeListArray.from_arrays(pa.array(ragged.data.reshape(-1)), dim)
                emb = pa.ListArray.from_arrays(pa.array(ragged.offsets.astype(np.int32)), tokens)
                writer.write_table(pa.table([pa.array(part), pa.array(ragged.lengths), emb],
                                            schema=schema))
        os.replace(tmp, out)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        raise disk_error(exc, out) or exc from None
    return len(keys)


def orphan_reports(root: str | Path) -> list[VerifyReport]:
    """A damage report for each store directory whose own metadata is missing."""
    cache = EmbeddingCache(root)
    return [VerifyReport(p.name, damaged={"(store)": "the store's zarr.json is missing or "
                                          "unreadable; `biofuse cache gc` rebuilds it from its "
                                          "parts"}) for p in cache.orphan_dirs()]


def adopt_orphans(root: str | Path) -> list[tuple[str, bool]]:
    """Rebuild the metadata of every orphaned store; (directory, rebuilt?) for each."""
    cache = EmbeddingCache(root)
    if cache.read_only:
        return []
    return [(p.name, cache.adopt(p) is not None) for p in cache.orphan_dirs()]


def open_for_maintenance(root: str | Path, fingerprint_id: str | None = None
                         ) -> list[EmbeddingStore]:
    cache = EmbeddingCache(root)
    if fingerprint_id:
        return [cache.open_id(fingerprint_id)]
    return cache.stores()
