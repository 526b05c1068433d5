"""One encoder fingerprint's store in the embedding cache (root.py: the cache directory that
holds the stores): committed immutable parts, read by key, written through a PartWriter.

Reads see only committed parts. A key held by several parts (two workers computed the same
sequence) resolves to the part with the smallest id, so every reader agrees.
See docs/cache-format.md.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from biofuse.cache.fingerprint import Fingerprint
from biofuse.cache.parts import Layout, PartIndex, read_part_index
from biofuse.cache.writer import PartWriter
from biofuse.errors import CacheCorruption, CacheError
from biofuse.files import real_subdirs, remove_tree


class CacheDir(Protocol):
    """What a store needs of the cache directory that holds it (root.EmbeddingCache)."""

    root: Path
    layout: Layout
    read_only: bool


class CacheDamageWarning(UserWarning):
    """A damaged part was found and skipped; the rest of the store stays usable."""


DEFAULT_PART_BYTES = 256 << 20
#: a store's scratch folders: parts being written (tmp/) and parts being removed (trash/)
SCRATCH = ("tmp", "trash")


@dataclass
class Ragged:
    """Variable-length sequences as one flat [tokens, dim] array plus offsets (no padding)."""

    data: np.ndarray
    offsets: np.ndarray
    keys: list[str]

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.data[self.offsets[i]:self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


class EmbeddingStore:
    """Embeddings of one encoder fingerprint: look up, write, and read by sequence key."""

    def __init__(self, cache: CacheDir, path: Path, fingerprint: Fingerprint):
        self.cache = cache
        self.path = path
        self.fingerprint = fingerprint
        self.dtype = fingerprint.numpy_dtype  # the numpy name of the storage dtype
        self._parts: list[PartIndex] = []
        self._where_: dict[str, tuple[int, int]] = {}  # key -> (part index, row)
        self._seen: set[str] = set()
        self._indexed = False  # part indexes are read on first use, not on open
        #: committed parts that cannot be read (part id -> problem); skipped by readers, so one
        #: damaged part costs only its own sequences (`cache verify` names it, `gc` removes it)
        self.damaged: dict[str, str] = {}

    @property
    def parts(self) -> list[PartIndex]:
        """Indexes of the committed parts, oldest first (read from disk on first use)."""
        if not self._indexed:
            self.refresh()
        return self._parts

    @property
    def _where(self) -> dict[str, tuple[int, int]]:
        if not self._indexed:
            self.refresh()
        return self._where_

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def dim(self) -> int | None:
        return self.parts[0].attrs["dim"] if self.parts else None

    # ----------------------------------------------------------------- index

    def part_dirs(self) -> list[Path]:
        parts = self.path / "parts"
        if not parts.is_dir():
            return []
        return sorted((p for p in parts.iterdir() if p.is_dir()), key=lambda p: p.name)

    def refresh(self) -> None:
        """Pick up parts committed (by any writer) since the last look; oldest id wins a key."""
        self._indexed = True
        new = [p for p in self.part_dirs() if p.name not in self._seen and p.name not in
               self.damaged]
        if not new:
            return
        with ThreadPoolExecutor(8) as pool:
            opened = list(pool.map(self._try_open_part, new))
        indexes = [i for i in opened if i is not None]
        if self._parts or indexes:  # parts of another dim than the store's first are damage
            dim = (self._parts or indexes)[0].attrs["dim"]
            for i in [i for i in indexes if i.attrs["dim"] != dim]:
                self._mark_damaged(i.part_id, f"dim {i.attrs['dim']}, the store has {dim}")
                indexes.remove(i)
        merged = sorted(self._parts + indexes, key=lambda p: p.part_id)
        self._parts = merged
        self._seen = {p.part_id for p in merged}
        self._where_ = {}
        for pi in reversed(range(len(merged))):  # older parts overwrite newer ones
            self._where_.update((k, (pi, row)) for row, k in enumerate(merged[pi].keys.tolist()))

    def _try_open_part(self, path: Path) -> PartIndex | None:
        try:
            return read_part_index(path)
        except Exception as exc:  # a finding about this part only
            self._mark_damaged(path.name, f"{type(exc).__name__}: {exc}")
            return None

    def _mark_damaged(self, part_id: str, problem: str) -> None:
        self.damaged[part_id] = problem
        warnings.warn(CacheDamageWarning(
            f"Part {part_id} of the cache store {self.path} is damaged ({problem}) and is "
            f"skipped: its sequences count as missing. `biofuse cache gc --drop-corrupt "
            f"{self.cache.root}` removes it; the next extract recomputes them."), stacklevel=3)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def keys(self) -> list[str]:
        return list(self._where)

    def n_tokens(self, keys: Iterable[str]) -> int:
        """Tokens stored for ``keys`` (keys not in the store count 0)."""
        total = 0
        for k in keys:
            where = self._where.get(k)
            if where is not None:
                off = self._parts[where[0]].offsets
                total += int(off[where[1] + 1] - off[where[1]])
        return total

    def missing(self, keys: Iterable[str]) -> list[str]:
        """Keys (unique, in first-seen order) not yet committed by any writer."""
        self.refresh()
        return [k for k in dict.fromkeys(keys) if k not in self._where]

    # ----------------------------------------------------------------- writing

    def require_writable(self, action: str) -> None:
        if self.cache.read_only:
            raise CacheError(f"The cache at {self.cache.root} is a URL, which biofuse reads but "
                             f"does not write; it cannot {action} it.",
                             "Work on a local or network-mounted copy of the cache, then copy "
                             "it back.")

    def writer(self, part_bytes: int = DEFAULT_PART_BYTES,
               part_seconds: float | None = None) -> PartWriter:
        self.require_writable("write to")
        return PartWriter(self, part_bytes, part_seconds)

    def write(self, keys: Sequence[str], arrays: Sequence[np.ndarray]) -> str | None:
        """Write and commit one part (convenience for small batches)."""
        with self.writer(part_bytes=1 << 62) as w:
            for k, a in zip(keys, arrays, strict=True):
                w.add(k, a)
        return w.part_ids[-1] if w.part_ids else None

    # ----------------------------------------------------------------- reading

    def get(self, key: str, dtype: str | None = None) -> np.ndarray:
        return self.load([key], dtype=dtype)[0]

    def load(self, keys: Sequence[str], *, dtype: str | None = None, threads: int = 4) -> Ragged:
        """Embeddings of ``keys`` (in that order) as one contiguous :class:`Ragged`, in the
        encoder's own tokens (alignment to codons is the fusion model's job, in fusion/align).
        ``dtype``: a numpy dtype name for the result (default: the storage dtype). Raises
        :class:`CacheError` naming missing keys.
        """
        keys = list(keys)
        absent = [k for k in keys if k not in self._where]
        if absent:
            self.refresh()
            absent = [k for k in keys if k not in self._where]
        if absent:
            raise CacheError(f"{len(absent)} of {len(keys)} sequences are not in the store "
                             f"{self.id} (e.g. key {absent[0]}).",
                             "Run `biofuse extract` on this dataset with this encoder first.")
        try:
            flat, offsets = self._gather(keys, threads)
        except CacheCorruption:
            raise
        except FileNotFoundError:
            self._forget_vanished()  # a part was compacted away under us: look again once
            flat, offsets = self._gather(keys, threads)
        return Ragged(flat.astype(dtype or self.dtype, copy=False), offsets, keys)

    def _forget_vanished(self) -> None:
        self._parts, self._where_, self._seen, self.damaged = [], {}, set(), {}
        self.refresh()

    def _gather(self, keys: list[str], threads: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode every needed chunk once, on a thread pool, and scatter its rows to each
        requested sequence that overlaps it."""
        spans = []  # (part index, start, stop) per requested key
        for k in keys:
            pi, row = self._where[k]
            off = self.parts[pi].offsets
            spans.append((pi, int(off[row]), int(off[row + 1])))
        lengths = np.array([e - s for _, s, e in spans], dtype=np.int64)
        offsets = np.zeros(len(keys) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.empty((int(offsets[-1]), self.dim or 0), dtype=self.dtype)
        tasks: dict[tuple[int, int], list[int]] = {}
        for i, (pi, s, e) in enumerate(spans):
            size = self.parts[pi].chunk
            for c in range(s // size, -(-e // size)):
                tasks.setdefault((pi, c), []).append(i)

        def fetch(task: tuple[tuple[int, int], list[int]]) -> None:
            (pi, c), members = task
            part = self.parts[pi]
            c_lo, size = c * part.chunk, part.chunk
            # a chunk inside one requested sequence is read straight into its place in ``flat``
            inside = [i for i in members if spans[i][1] <= c_lo and c_lo + size <= spans[i][2]]
            if inside:
                first = inside[0]
                dest = flat[offsets[first] + c_lo - spans[first][1]:][:size]
                self._read(part, c, lambda: part.read_chunk_into(c, dest))
                block = dest
            else:
                block = self._read(part, c, lambda: part.chunk_data(c))
            for i in members:
                if inside and i == first:
                    continue
                _, s, e = spans[i]
                lo, hi = max(s, c_lo), min(e, c_lo + size)
                flat[offsets[i] + lo - s:offsets[i] + hi - s] = block[lo - c_lo:hi - c_lo]

        if len(tasks) <= 2:
            for task in tasks.items():
                fetch(task)
        else:
            with ThreadPoolExecutor(min(threads, len(tasks))) as pool:
                list(pool.map(fetch, tasks.items()))
        return flat, offsets

    def _read(self, part: PartIndex, c: int, read):
        """Run ``read`` (a read of chunk ``c`` of ``part``), turning damage into CacheCorruption.

        Every chunk is checked against its crc32c, so what comes back is what the writer wrote,
        and writers refuse NaN/Inf: no value scan is needed here (`verify` still does one).
        """
        try:
            return read()
        except FileNotFoundError as exc:
            if not part.path.exists():
                raise  # compacted away: the caller re-reads the directory
            raise CacheCorruption(
                f"Part {part.part_id} in {self.path} is missing its data file {exc.filename}.",
                f"Run `biofuse cache gc --drop-corrupt {self.cache.root}` to remove the part so "
                "its sequences are recomputed.") from exc
        except Exception as exc:
            raise CacheCorruption(
                f"Chunk {c} of part {part.part_id} in {self.path} cannot be read ({exc}).",
                f"Run `biofuse cache verify {self.cache.root}`, then `biofuse cache gc "
                "--drop-corrupt` to remove damaged parts so they are recomputed.") from exc

    def remove_if_empty(self) -> bool:
        """Delete this store if it holds no committed part and no part being written (so a run
        that failed before computing anything leaves no empty store behind)."""
        busy = [d for d in ("parts", "tmp")
                if any(p.is_dir() for p in real_subdirs(self.path / d))]
        if busy or self.cache.read_only or not self.is_own_folder():
            return False
        remove_tree(self.cache.root, self.path)
        return True

    def is_own_folder(self) -> bool:
        """The store's folder is a real folder of its cache, not a link to one elsewhere."""
        return not self.path.is_symlink() and self.path.resolve().parent == \
            Path(self.cache.root).resolve()

    def own_scratch(self) -> list[str]:
        """Make tmp/ and trash/ real folders of the store: one that is a symbolic link (a copied
        or shared cache) would send writes and deletions to its target. Returns the ones that
        were links (the link is removed; its target is not touched)."""
        replaced = []
        for name in SCRATCH:
            path = self.path / name
            if path.is_symlink():
                path.unlink()
                replaced.append(name)
            path.mkdir(exist_ok=True)
        return replaced

    def remove_parts(self, part_ids: Iterable[str]) -> int:
        """Take parts out of the store: an atomic rename out of parts/, then deletion."""
        self.require_writable("remove parts from")
        self.own_scratch()
        trash = self.path / "trash"
        n = 0
        for pid in part_ids:
            src = self.path / "parts" / pid
            if src.exists() or src.is_symlink():
                os.rename(src, trash / pid)
                remove_tree(self.path, trash / pid)
                n += 1
        self._forget_vanished()
        return n

