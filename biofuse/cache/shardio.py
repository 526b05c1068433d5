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
import queue
import struct
import threading
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
    """Chunk length within 25% of ``target`` that wastes the fewest padding rows (zarr stores the
    edge chunk whole, padded with the fill value); ties go to the length nearest ``target``.
    Usually the waste is zero: some length in the window divides ``n_tokens``."""
    target = max(1, target)
    if n_tokens <= target:
        return max(1, n_tokens)
    lo, hi = max(1, (3 * target) // 4), (5 * target) // 4
    sizes = np.arange(lo, hi + 1)
    waste = (-n_tokens) % sizes
    best = np.flatnonzero(waste == waste.min())
    return int(sizes[best[np.argmin(np.abs(sizes[best] - target))]])


def _with_crc(payload: bytes) -> bytes:
    return payload + struct.pack("<I", crc32c.crc32c(payload))


def _check_crc(buf: bytes, what: str) -> bytes:
    if len(buf) < 4:
        raise ChunkError(f"{what} is truncated ({len(buf)} bytes)")
    payload, (stored,) = buf[:-4], struct.unpack("<I", buf[-4:])
    if crc32c.crc32c(payload) != stored:
        raise ChunkError(f"{what} fails its crc32c checksum")
    return payload


class NonFinite(ValueError):
    """Values that are NaN or Inf in the storage dtype: refused, since NaN marks missing data."""

    def __init__(self, lo: int, hi: int):
        super().__init__(f"tokens {lo}..{hi} hold NaN or Inf")
        self.lo, self.hi = lo, hi


def all_finite(a: np.ndarray) -> bool:
    """No NaN or Inf, by the exponent bits (numpy's float16 isfinite is ~4x slower)."""
    if a.size == 0:
        return True
    if a.dtype == np.float16:
        return int((a.view(np.uint16) & 0x7FFF).max()) < 0x7C00
    if a.dtype == np.float32:
        return int((a.view(np.uint32) & 0x7FFFFFFF).max()) < 0x7F800000
    return bool(np.isfinite(a).all())


def write_shard(path: Path, arrays: list[np.ndarray], chunk: int, compressed: bool) -> None:
    """Encode the concatenation of ``arrays`` (each [tokens_i, dim], one dtype) as one shard of
    ``chunk``-token inner chunks at ``path``; raises :class:`NonFinite` (leaving a partial file
    for the caller to remove) if any value is NaN or Inf.

    The concatenation is never built: each chunk is gathered from the arrays it overlaps, checked
    and checksummed while its cache lines are hot, then written: encoded on a thread pool
    (compressed), or, uncompressed, written straight from the arrays by a writer thread while
    the next chunks are checked (the page-cache copy and the checks overlap on two cores).
    """
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    n_tokens, dim, dtype = int(starts[-1]), arrays[0].shape[1], arrays[0].dtype
    n_chunks = -(-n_tokens // chunk) if n_tokens else 0
    pad = np.full((chunk, dim), np.nan, dtype=dtype)

    def pieces(c: int) -> list[np.ndarray]:
        """The checked row blocks of chunk ``c`` in order, padded to ``chunk`` rows."""
        lo, hi = c * chunk, min((c + 1) * chunk, n_tokens)
        out = []
        a = int(np.searchsorted(starts, lo, side="right")) - 1
        while lo < hi:
            take = min(hi, int(starts[a + 1])) - lo
            if take > 0:
                s = lo - int(starts[a])
                block = np.ascontiguousarray(arrays[a][s:s + take])
                if not all_finite(block):
                    raise NonFinite(lo, lo + take)
                out.append(block)
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
    nbytes = chunk * dim * dtype.itemsize + 4
    index[:, 0] = np.arange(n_chunks, dtype=np.uint64) * nbytes
    index[:, 1] = nbytes
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with _WriterThread(fd) as writer:
            bufs: list = []
            batch = max(1, (16 << 20) // nbytes)  # hand ~16 MB at a time to the writer
            for c in range(n_chunks):
                crc = 0
                for piece in pieces(c):
                    view = memoryview(piece).cast("B")
                    crc = crc32c.crc32c(view, crc, gil_release_mode=1)
                    bufs.append(view)
                bufs.append(struct.pack("<I", crc))
                if (c + 1) % batch == 0:
                    writer.put(bufs)
                    bufs = []
            bufs.append(_with_crc(index.tobytes()))
            writer.put(bufs)
    finally:
        os.close(fd)


class _WriterThread:
    """Writes lists of buffers to ``fd`` in order on one background thread; re-raises its error
    in the caller (on ``put`` or on leaving the ``with``)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.queue: queue.Queue = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while (bufs := self.queue.get()) is not None:
            if self.error is None:
                try:
                    _writev_all(self.fd, bufs)
                except BaseException as exc:  # handed to the caller
                    self.error = exc

    def put(self, bufs: list) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(bufs)

    def __enter__(self) -> _WriterThread:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and exc[0] is None:
            raise self.error


def _writev_all(fd: int, bufs: list) -> None:
    """Write every buffer in order (writev may write less than asked)."""
    views = [memoryview(b).cast("B") for b in bufs]
    while views:
        n = os.writev(fd, views[:1024])
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if n:
            views[0] = views[0][n:]


class ShardReader:
    """Reads token ranges of one shard: the index once, then only the chunks a range needs."""

    def __init__(self, path: Path, chunk: int, dim: int, dtype: str, compressed: bool):
        self.path, self.chunk, self.dim = path, chunk, dim
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.codec = _blosc(self.dtype.itemsize) if compressed else None
        self._index: np.ndarray | None = None
        self._n_chunks: int | None = None

    @property
    def local(self) -> bool:
        """A filesystem path (read with pread); otherwise a UPath read with fsspec ranges."""
        return isinstance(self.path, Path)

    def _size(self) -> int:
        return os.stat(self.path).st_size if self.local else int(self.path.fs.size(self.path.path))

    def _read_range(self, offset: int, nbytes: int) -> bytes:
        if not self.local:
            return self.path.fs.cat_file(self.path.path, offset, offset + nbytes)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return os.pread(fd, nbytes, offset)
        finally:
            os.close(fd)

    def index(self, n_chunks: int) -> np.ndarray:
        if self._index is None:
            nbytes = n_chunks * 16 + 4
            size = self._size()
            if size < nbytes:
                raise ChunkError(f"shard {self.path.name} is truncated ({size} bytes)")
            payload = _check_crc(self._read_range(size - nbytes, nbytes), "the shard index")
            index = np.frombuffer(payload, dtype="<u8").reshape(n_chunks, 2)
            if np.any(index == _EMPTY):
                raise ChunkError("the shard index lists missing chunks")
            if np.any(index[:, 0] + index[:, 1] > size - nbytes):
                raise ChunkError("the shard index points past the end of the shard")
            self._index = index
        return self._index

    def _span(self, c: int, n_chunks: int) -> tuple[int, int]:
        index = self.index(n_chunks)
        return int(index[c, 0]), int(index[c, 1])

    def chunk_data(self, c: int, n_chunks: int) -> np.ndarray:
        """Inner chunk ``c`` decoded and checked: a read-only [chunk, dim] array."""
        offset, nbytes = self._span(c, n_chunks)
        buf = self._read_range(offset, nbytes)
        if len(buf) != nbytes:
            raise ChunkError(f"chunk {c} of shard {self.path.name} is truncated")
        payload = _check_crc(buf, f"chunk {c} of shard {self.path.name}")
        raw = self.codec.decode(payload) if self.codec else payload
        return np.frombuffer(raw, dtype=self.dtype).reshape(self.chunk, self.dim)

    def read_chunk_into(self, c: int, n_chunks: int, out: np.ndarray) -> None:
        """Inner chunk ``c`` into ``out`` (a C-contiguous [chunk, dim] array of this dtype),
        checked. Uncompressed chunks are read straight into ``out``: no intermediate buffer."""
        if (self.codec is not None or not self.local or out.dtype != self.dtype
                or not out.flags.c_contiguous):
            out[...] = self.chunk_data(c, n_chunks)
            return
        offset, nbytes = self._span(c, n_chunks)
        view = memoryview(out).cast("B")
        if nbytes != len(view) + 4:
            raise ChunkError(f"chunk {c} of shard {self.path.name} has {nbytes} bytes, "
                             f"expected {len(view) + 4}")
        tail = bytearray(4)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            got = os.preadv(fd, [view, tail], offset)
        finally:
            os.close(fd)
        if got != nbytes:
            raise ChunkError(f"chunk {c} of shard {self.path.name} is truncated")
        if crc32c.crc32c(view) != struct.unpack("<I", tail)[0]:
            raise ChunkError(f"chunk {c} of shard {self.path.name} fails its crc32c checksum")

    def read(self, lo: int, hi: int, n_chunks: int) -> np.ndarray:
        """Tokens [lo, hi) as a new [hi - lo, dim] array."""
        out = np.empty((max(0, hi - lo), self.dim), dtype=self.dtype)
        for c in range(lo // self.chunk, -(-hi // self.chunk)):
            s, e = max(lo, c * self.chunk), min(hi, (c + 1) * self.chunk)
            out[s - lo:e - lo] = self.chunk_data(c, n_chunks)[s - c * self.chunk:e - c * self.chunk]
        return out
