"""Immutable parts: the unit of writing, committing and reading in an embedding store.

A part is a Zarr group holding ``embeddings`` [tokens, dim], ``offsets`` [n + 1] and ``keys`` [n]
for a batch of sequences. A writer builds it under ``tmp/<part id>/`` and commits it with one
atomic directory rename into ``parts/<part id>/``: a part is visible complete or not at all,
and no two writers ever touch the same file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from biofuse.cache.meta import array_doc, group_doc
from biofuse.cache.shardio import BLOSC, ShardReader, balanced_chunk, write_shard
from biofuse.errors import CacheError
from biofuse.version import __version__

#: target uncompressed bytes of one chunk (see docs/cache-format.md for the measurements)
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Layout:
    """How parts are laid out on disk; recorded in the cache root, followed by all writers.

    Each part's embeddings are one shard file of ~``chunk_bytes`` inner chunks, each
    crc32c-checksummed and, with ``compressed``, blosc-lz4-bitshuffle compressed (measured on
    real embeddings: 0.944x the bytes for ~2x the write CPU; see docs/cache-format.md).
    """

    chunk_bytes: int = CHUNK_BYTES
    compressed: bool = False

    def to_dict(self) -> dict:
        return {"chunk_bytes": self.chunk_bytes, "compressed": self.compressed}


def new_part_id() -> str:
    """Time-ordered, unique across processes and machines: ``<ns since epoch, hex>-<random>``."""
    return f"{time.time_ns():016x}-{uuid.uuid4().hex[:12]}"


def index_digest(keys: np.ndarray, offsets: np.ndarray) -> str:
    h = hashlib.sha256(np.ascontiguousarray(offsets, dtype="<i8").tobytes())
    h.update("\n".join(keys.tolist()).encode())
    return h.hexdigest()


def write_part(fp_dir: Path, keys: list[str], arrays: list[np.ndarray], dtype: str,
               layout: Layout, fingerprint: dict | None = None) -> str:
    """Write one part and commit it; returns its id. Arrays are [tokens_i, dim]; NaN/Inf raise NonFinite.

    Every file is written directly (metadata documents as the Zarr v3 spec spells them, chunk
    files by shardio): zarr-python's create/update calls cost ~45 ms per part, a fifth of the
    time to write a 256 MB part. zarr-python reads all of it (tested).
    """
    part_id = new_part_id()
    if (fp_dir / "tmp").is_symlink():  # its target is not ours to write
        raise CacheError(f"{fp_dir / 'tmp'} is a symbolic link to {(fp_dir / 'tmp').resolve()}; "
                         "biofuse writes a cache only inside its own folder.",
                         f"Run `biofuse cache gc {fp_dir.parent}`, which replaces the link with "
                         "a folder (the link's target is not touched), then run again.")
    tmp = fp_dir / "tmp" / part_id
    arrays = [np.asarray(a, dtype=np.dtype(dtype).newbyteorder("<")) for a in arrays]
    dim = int(arrays[0].shape[1])
    offsets = np.zeros(len(arrays) + 1, dtype="<i8")
    np.cumsum([a.shape[0] for a in arrays], out=offsets[1:])
    n_tokens = int(offsets[-1])
    keys_arr = np.array(keys, dtype=object)
    itemsize = np.dtype(dtype).itemsize
    chunk = balanced_chunk(n_tokens, max(16, layout.chunk_bytes // (dim * itemsize)))
    attrs = {"n_sequences": len(keys), "n_tokens": n_tokens, "dim": dim,
             "dtype": dtype, "index_sha256": index_digest(keys_arr, offsets),
             "writer": f"{socket.gethostname()}:{os.getpid()}",
             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "biofuse_version": __version__, "chunk_tokens": chunk,
             "compressed": layout.compressed,
             # a copy of the store's fingerprint: the store's own metadata can be rebuilt
             # from any of its parts (`biofuse cache gc`)
             "fingerprint": fingerprint}
    (tmp / "embeddings").mkdir(parents=True)
    try:
        _write_files(tmp, attrs, keys, offsets, arrays, chunk, layout)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a refused part leaves nothing behind
        raise
    os.rename(tmp, fp_dir / "parts" / part_id)  # the commit: atomic on POSIX filesystems
    return part_id


def _write_files(tmp: Path, attrs: dict, keys: list[str], offsets: np.ndarray,
                 arrays: list[np.ndarray], chunk: int, layout: Layout) -> None:
    n_tokens, dim, dtype = attrs["n_tokens"], attrs["dim"], attrs["dtype"]
    _write_json(tmp / "zarr.json", group_doc(attrs))
    _write_json(tmp / "embeddings" / "zarr.json",
                embeddings_metadata(n_tokens, dim, dtype, chunk, layout.compressed))
    if n_tokens:
        write_shard(tmp / "embeddings" / "c" / "0" / "0", arrays, chunk, layout.compressed)
    _write_small_array(tmp / "offsets", offsets.tobytes(), len(offsets), "int64", -1,
                       [{"name": "bytes", "configuration": {"endian": "little"}}])
    _write_small_array(tmp / "keys", _vlen_utf8(keys), len(keys), "string", "",
                       [{"name": "vlen-utf8", "configuration": {}}])


def embeddings_metadata(n_tokens: int, dim: int, dtype: str, chunk: int,
                        compressed: bool) -> dict:
    """zarr.json of a part's [tokens, dim] array: one shard of ``chunk``-token inner chunks."""
    inner: list[dict] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if compressed:
        inner.append({"name": "blosc", "configuration": {
            "typesize": np.dtype(dtype).itemsize, "cname": BLOSC["cname"],
            "clevel": BLOSC["clevel"], "shuffle": "bitshuffle", "blocksize": 0}})
    inner.append({"name": "crc32c"})
    n_chunks = max(1, -(-n_tokens // chunk))
    return array_doc([n_tokens, dim], dtype, [chunk * n_chunks, dim], "NaN", [
        {"name": "sharding_indexed", "configuration": {
            "chunk_shape": [chunk, dim], "codecs": inner,
            "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                             {"name": "crc32c"}],
            "index_location": "end"}}], dimension_names=["token", "feature"])


def _write_small_array(path: Path, chunk_bytes: bytes, n: int, data_type: str, fill,
                       codecs: list[dict]) -> None:
    """A 1-d array stored as a single chunk ``c/0`` (none when empty, as zarr does)."""
    path.mkdir()
    _write_json(path / "zarr.json", array_doc([n], data_type, [max(n, 1)], fill, codecs))
    if n:
        (path / "c").mkdir()
        (path / "c" / "0").write_bytes(chunk_bytes)


def _vlen_utf8(items: list[str]) -> bytes:
    """Zarr's vlen-utf8 encoding: item count, then each item as (byte length, UTF-8 bytes),
    lengths as little-endian uint32."""
    out = [struct.pack("<I", len(items))]
    for item in items:
        b = item.encode()
        out += [struct.pack("<I", len(b)), b]
    return b"".join(out)


def _write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2, allow_nan=False))


@dataclass
class PartIndex:
    """The keys and offsets of one committed part, read when the store opens."""

    part_id: str
    path: Path
    keys: np.ndarray
    offsets: np.ndarray
    attrs: dict
    _reader: ShardReader | None = None

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def chunk(self) -> int:
        return int(self.attrs["chunk_tokens"])

    @property
    def n_chunks(self) -> int:
        return -(-self.n_tokens // self.chunk)

    @property
    def reader(self) -> ShardReader:
        if self._reader is None:
            self._reader = ShardReader(self.path / "embeddings" / "c" / "0" / "0", self.chunk,
                                       int(self.attrs["dim"]), self.attrs["dtype"],
                                       bool(self.attrs["compressed"]))
        return self._reader

    def chunk_data(self, c: int) -> np.ndarray:
        """Inner chunk ``c`` of the embeddings (raises ChunkError / OSError on damage)."""
        return self.reader.chunk_data(c, self.n_chunks)

    def read_chunk_into(self, c: int, out: np.ndarray) -> None:
        """Inner chunk ``c`` straight into ``out`` [chunk, dim] (raises on damage)."""
        self.reader.read_chunk_into(c, self.n_chunks, out)

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Embeddings of tokens [lo, hi) of this part (raises ChunkError / OSError on damage)."""
        return self.reader.read(lo, hi, self.n_chunks)


#: every sequence key is 32 lower-case hex digits (sequence_key); anything else is damage or a
#: crafted file, never a name to write out (export) or to trust
_HEX = frozenset("0123456789abcdef")
#: the most a compressed part's data may shrink (float embeddings compress ~1.06x; zeros far more)
MAX_COMPRESSION = 1000


def read_part_index(path: Path) -> PartIndex:
    """Open a committed part's index; raises on any inconsistency (caller wraps the error)."""
    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs)
    keys = group["keys"][:]
    offsets = group["offsets"][:]
    problems = index_problems(keys, offsets, attrs) or size_problems(path, attrs)
    if problems:
        raise ValueError("; ".join(problems))
    return PartIndex(path.name, path, keys, offsets, attrs)


def size_problems(path: Path, attrs: dict) -> list[str]:
    """The data file must be able to hold what the metadata claims, so a damaged or crafted
    token count is caught before anyone allocates memory for it."""
    try:
        claimed = int(attrs["n_tokens"]) * int(attrs["dim"]) * np.dtype(attrs["dtype"]).itemsize
    except (KeyError, TypeError, ValueError) as exc:
        return [f"metadata incomplete or malformed ({exc})"]
    shard = path / "embeddings" / "c" / "0" / "0"
    present = shard.stat().st_size if shard.is_file() else 0
    need = claimed // MAX_COMPRESSION if attrs.get("compressed") else claimed
    if present < need:
        return [f"metadata claims {attrs['n_tokens']} tokens x {attrs['dim']} ({claimed:,} bytes) "
                f"but the data file holds {present:,} bytes"]
    return []


def index_problems(keys: np.ndarray, offsets: np.ndarray, attrs: dict) -> list[str]:
    """Every way the index of a part can disagree with itself or its recorded digest."""
    out = []
    bad = [k for k in keys.tolist() if not (isinstance(k, str) and len(k) == 32
                                            and _HEX.issuperset(k))]
    if bad:
        out.append(f"{len(bad)} keys are not 32 hex digits (e.g. {str(bad[0])[:40]!r})")
    if offsets.shape != (len(keys) + 1,):
        out.append(f"{len(offsets)} offsets for {len(keys)} keys")
    elif offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        out.append("offsets do not start at 0 and increase")
    elif offsets[-1] != attrs.get("n_tokens"):
        out.append(f"offsets end at {offsets[-1]}, the part holds {attrs.get('n_tokens')} tokens")
    if attrs.get("index_sha256") != index_digest(keys, offsets):
        out.append("keys/offsets differ from the digest recorded when the part was written")
    return out
