"""Immutable parts: the unit of writing, committing and reading in an embedding store.

A part is a Zarr group holding ``embeddings`` [tokens, dim], ``offsets`` [n + 1] and ``keys`` [n]
for a batch of sequences. A writer builds it under ``tmp/<part id>/`` and commits it with one
atomic directory rename into ``parts/<part id>/``: a part is visible complete or not at all,
and no two writers ever touch the same file.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from biofuse import __version__
from biofuse.cache.shardio import BLOSC, ShardReader, balanced_chunk, write_shard

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
               layout: Layout) -> str:
    """Write one part and commit it; returns its id. Arrays are [tokens_i, dim], already checked."""
    part_id = new_part_id()
    tmp = fp_dir / "tmp" / part_id
    arrays = [np.asarray(a, dtype=np.dtype(dtype).newbyteorder("<")) for a in arrays]
    dim = arrays[0].shape[1]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([a.shape[0] for a in arrays], out=offsets[1:])
    keys_arr = np.array(keys, dtype=object)
    attrs = {"n_sequences": len(keys), "n_tokens": int(offsets[-1]), "dim": int(dim),
             "dtype": dtype, "index_sha256": index_digest(keys_arr, offsets),
             "writer": f"{socket.gethostname()}:{os.getpid()}",
             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "biofuse_version": __version__}
    group = zarr.open_group(str(tmp), mode="w-")
    chunk = _write_embeddings(group, tmp, arrays, int(offsets[-1]), dim, dtype, layout)
    group.attrs.update(attrs | {"chunk_tokens": chunk, "compressed": layout.compressed})
    group.create_array("offsets", data=offsets, chunks=(max(len(offsets), 1),),
                       compressors=None, fill_value=-1)
    keys_out = group.create_array("keys", shape=(len(keys),), dtype=str,
                                  chunks=(max(len(keys), 1),))
    keys_out[:] = keys_arr
    os.rename(tmp, fp_dir / "parts" / part_id)  # the commit: atomic on POSIX filesystems
    return part_id


def _write_embeddings(group, part_dir: Path, arrays: list[np.ndarray], n_tokens: int, dim: int,
                      dtype: str, layout: Layout) -> int:
    """Zarr metadata through zarr; the single shard file through shardio. Returns the chunk."""
    itemsize = np.dtype(dtype).itemsize
    chunk = balanced_chunk(n_tokens, max(16, layout.chunk_bytes // (dim * itemsize)))
    n_chunks = max(1, -(-n_tokens // chunk))
    compressors: list = []
    if layout.compressed:
        compressors.append(BloscCodec(cname=BLOSC["cname"], clevel=BLOSC["clevel"],
                                      shuffle="bitshuffle", typesize=itemsize))
    compressors.append(Crc32cCodec())  # every chunk is checksummed; damage is an error on read
    group.create_array(
        "embeddings", shape=(n_tokens, dim), dtype=dtype, chunks=(chunk, dim),
        shards=(chunk * n_chunks, dim), compressors=compressors, fill_value=np.nan,
        dimension_names=("token", "feature"), config={"write_empty_chunks": True})
    if n_tokens:
        write_shard(part_dir / "embeddings" / "c" / "0" / "0", arrays, chunk, layout.compressed)
    return chunk


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

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Embeddings of tokens [lo, hi) of this part (raises ChunkError / OSError on damage)."""
        return self.reader.read(lo, hi, self.n_chunks)


def read_part_index(path: Path) -> PartIndex:
    """Open a committed part's index; raises on any inconsistency (caller wraps the error)."""
    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs)
    keys = group["keys"][:]
    offsets = group["offsets"][:]
    problems = index_problems(keys, offsets, attrs)
    if problems:
        raise ValueError("; ".join(problems))
    return PartIndex(path.name, path, keys, offsets, attrs)


def index_problems(keys: np.ndarray, offsets: np.ndarray, attrs: dict) -> list[str]:
    """Every way the index of a part can disagree with itself or its recorded digest."""
    out = []
    if offsets.shape != (len(keys) + 1,):
        out.append(f"{len(offsets)} offsets for {len(keys)} keys")
    elif offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        out.append("offsets do not start at 0 and increase")
    elif offsets[-1] != attrs.get("n_tokens"):
        out.append(f"offsets end at {offsets[-1]}, the part holds {attrs.get('n_tokens')} tokens")
    if attrs.get("index_sha256") != index_digest(keys, offsets):
        out.append("keys/offsets differ from the digest recorded when the part was written")
    return out
