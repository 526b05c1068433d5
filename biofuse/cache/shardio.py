"""Fast reading and writing of one Zarr v3 shard, byte-compatible with zarr-python.

A part's embeddings are a Zarr v3 array [tokens, dim] stored as a single shard file
(``embeddings/c/0/0``) of inner chunks. biofuse writes and reads that file itself, because
zarr-python's generic pipeline costs 3-10x the time of the I/O on this path (see
docs/cache-format.md); the array metadata is ordinary zarr, and zarr-python reads every shard
biofuse writes (and `biofuse cache verify` reads them through zarr, as an independent check).

Codec chain, as recorded in the array's zarr.json:
  sharding_indexed(chunk_shape=[C, dim],
                   codecs=[bytes(little), blosc(lz4, bitshuffle, typesize) | none, crc32c],
                   index_codecs=[bytes(little), crc32c], index_location=end)
A shard is the encoded inner chunks back to back, then the index: one (offset, nbytes) uint64
pair per chunk, little-endian, followed by the index's crc32c.
"""

from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import crc32c
import numpy as np
from numcodecs import Blosc

BLOSC = {"cname": "lz4", "clevel": 5, "shuffle": Blosc.BITSHUFFLE}
_EMPTY = 2**64 - 1


class ChunkError(ValueError):
    """A chunk or shard index fails its checksum or cannot be decoded."""


def _blosc(typesize: int) -> Blosc:
    return Blosc(cname=BLOSC["cname"], clevel=BLOSC["clevel"], shuffle=BLOSC["shuffle"],
                 typesize=typesize)


def balanced_chunk(n_tokens: int, target: int) -> int:
    """Chunk length near ``target`` that splits ``n_tokens`` into equal chunks, so the padded
    edge chunk (zarr stores edge chunks whole) wastes less than one token per chunk."""
    if n_tokens <= 0:
        return 1
    n_chunks = -(-n_tokens // max(1, target))
    return -(-n_tokens // n_chunks)


def _with_crc(payload: bytes) -> bytes:
    return payload + struct.pack("<I", crc32c.crc32c(payload))


def _check_crc(buf: bytes, what: str) -> bytes:
    if len(buf) < 4:
        raise ChunkError(f"{what} is truncated ({len(buf)} bytes)")
    payload, (stored,) = buf[:-4], struct.unpack("<I", buf[-4:])
    if crc32c.crc32c(payload) != stored:
        raise ChunkError(f"{what} fails its crc32c checksum")
    return payload


def write_shard(path: Path, arrays: list[np.ndarray], chunk: int, compressed: bool) -> None:
    """Encode the concatenation of ``arrays`` (each [tokens_i, dim], one dtype) as one shard of
    ``chunk``-token inner chunks at ``path``.

    The concatenation is never built: each chunk is gathered from the arrays it overlaps inside
    the encoding thread (compressed), or its pieces are written straight from the arrays with an
    incremental checksum (uncompressed).
    """
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    n_tokens, dim, dtype = int(starts[-1]), arrays[0].shape[1], arrays[0].dtype
    n_chunks = -(-n_tokens // chunk) if n_tokens else 0
    pad = np.full((chunk, dim), np.nan, dtype=dtype)

    def pieces(c: int) -> list[np.ndarray]:
        """The row blocks that make up chunk ``c``, in order, padded to ``chunk`` rows."""
        lo, hi = c * chunk, min((c + 1) * chunk, n_tokens)
        out = []
        a = int(np.searchsorted(starts, lo, side="right")) - 1
        while lo < hi:
            take = min(hi, int(starts[a + 1])) - lo
            if take > 0:
                s = lo - int(starts[a])
                out.append(arrays[a][s:s + take])
                lo += take
            a += 1
        if hi - c * chunk < chunk:  # the edge chunk is stored whole, padded with the fill value
            out.append(pad[:chunk - (hi - c * chunk)])
        return out

    path.parent.mkdir(parents=True, exist_ok=True)
    index = np.empty((n_chunks, 2), dtype="<u8")
    if compressed:
        codec = _blosc(dtype.itemsize)

        def encode(c: int) -> bytes:
            return _with_crc(bytes(codec.encode(np.concatenate(pieces(c)))))

        with open(path, "wb") as f, ThreadPoolExecutor(min(4, max(1, n_chunks))) as pool:
            pos = 0
            for c, buf in enumerate(pool.map(encode, range(n_chunks))):
                f.write(buf)
                index[c] = (pos, len(buf))
                pos += len(buf)
            f.write(_with_crc(index.tobytes()))
        return
    # Uncompressed: every chunk has the same size, so threads checksum and write chunks straight
    # from the source arrays at known offsets (the kernel's page-cache copy runs on all cores).
    nbytes = chunk * dim * dtype.itemsize + 4
    index[:, 0] = np.arange(n_chunks, dtype=np.uint64) * nbytes
    index[:, 1] = nbytes
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        def put(c: int) -> None:
            pos, crc = c * nbytes, 0
            for piece in pieces(c):
                view = memoryview(np.ascontiguousarray(piece)).cast("B")
                crc = crc32c.crc32c(view, crc)
                pos = _pwrite_all(fd, view, pos)
            _pwrite_all(fd, memoryview(struct.pack("<I", crc)), pos)

        with ThreadPoolExecutor(min(4, max(1, n_chunks))) as pool:
            list(pool.map(put, range(n_chunks)))
        _pwrite_all(fd, memoryview(_with_crc(index.tobytes())), n_chunks * nbytes)
    finally:
        os.close(fd)


def _pwrite_all(fd: int, view: memoryview, pos: int) -> int:
    """Write all of ``view`` at ``pos`` (pwrite may write less); returns the end position."""
    while len(view):
        n = os.pwrite(fd, view, pos)
        view, pos = view[n:], pos + n
    return pos


class ShardReader:
    """Reads token ranges of one shard: the index once, then only the chunks a range needs."""

    def __init__(self, path: Path, chunk: int, dim: int, dtype: str, compressed: bool):
        self.path, self.chunk, self.dim = path, chunk, dim
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.codec = _blosc(self.dtype.itemsize) if compressed else None
        self._index: np.ndarray | None = None
        self._n_chunks: int | None = None

    def index(self, n_chunks: int) -> np.ndarray:
        if self._index is None:
            nbytes = n_chunks * 16 + 4
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < nbytes:
                    raise ChunkError(f"shard {self.path.name} is truncated ({size} bytes)")
                f.seek(size - nbytes)
                payload = _check_crc(f.read(nbytes), "the shard index")
            index = np.frombuffer(payload, dtype="<u8").reshape(n_chunks, 2)
            if np.any(index == _EMPTY):
                raise ChunkError("the shard index lists missing chunks")
            if np.any(index[:, 0] + index[:, 1] > size - nbytes):
                raise ChunkError("the shard index points past the end of the shard")
            self._index = index
        return self._index

    def chunk_data(self, c: int, n_chunks: int) -> np.ndarray:
        """Inner chunk ``c`` decoded and checked: a read-only [chunk, dim] array."""
        index = self.index(n_chunks)
        offset, nbytes = int(index[c, 0]), int(index[c, 1])
        fd = os.open(self.path, os.O_RDONLY)
        try:
            buf = os.pread(fd, nbytes, offset)
        finally:
            os.close(fd)
        if len(buf) != nbytes:
            raise ChunkError(f"chunk {c} of shard {self.path.name} is truncated")
        payload = _check_crc(buf, f"chunk {c} of shard {self.path.name}")
        raw = self.codec.decode(payload) if self.codec else payload
        return np.frombuffer(raw, dtype=self.dtype).reshape(self.chunk, self.dim)

    def read(self, lo: int, hi: int, n_chunks: int) -> np.ndarray:
        """Tokens [lo, hi) as a new [hi - lo, dim] array."""
        out = np.empty((max(0, hi - lo), self.dim), dtype=self.dtype)
        for c in range(lo // self.chunk, -(-hi // self.chunk)):
            s, e = max(lo, c * self.chunk), min(hi, (c + 1) * self.chunk)
            out[s - lo:e - lo] = self.chunk_data(c, n_chunks)[s - c * self.chunk:e - c * self.chunk]
        return out
