"""Writing to a store: buffer embeddings, commit them as immutable parts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from biofuse.cache.fingerprint import Fingerprint
from biofuse.cache.parts import write_part
from biofuse.cache.shardio import NonFinite, all_finite
from biofuse.errors import CacheError


class Writable(Protocol):
    """What a writer needs of the store it writes (store.EmbeddingStore)."""

    path: Path
    dtype: str
    fingerprint: Fingerprint
    cache: Any  # the cache directory: its ``layout``

    @property
    def dim(self) -> int | None: ...

    def refresh(self) -> None: ...


class PartWriter:
    """Buffers embeddings and commits them as parts of about ``part_bytes``, or sooner when the
    oldest buffered embedding is ``part_seconds`` old (so a crash loses at most that much work).

    Use as a context manager: on exit (also on Ctrl-C or an error) the buffered, complete
    embeddings are committed, so finished work is never lost.
    """

    def __init__(self, store: Writable, part_bytes: int, part_seconds: float | None = None):
        self.store = store
        self.part_bytes = part_bytes
        self.part_seconds = part_seconds
        self._since = 0.0
        self.part_ids: list[str] = []
        self._keys: list[str] = []
        self._arrays: list[np.ndarray] = []
        self._pending: set[str] = set()
        self._bytes = 0
        self._dim = store.dim

    def add(self, key: str, embedding: np.ndarray) -> None:
        emb = np.asarray(embedding)
        if emb.ndim != 2:
            raise ValueError(f"embedding for {key} must be [tokens, dim], got shape {emb.shape}")
        if self._dim is None:
            self._dim = emb.shape[1]
        if emb.shape[1] != self._dim:
            raise CacheError(f"Embedding dim {emb.shape[1]} does not match the store's {self._dim}.",
                             "An encoder fingerprint must always produce the same dim.")
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught on writing
            stored = emb.astype(self.store.dtype, copy=False)
        if key in self._pending:
            return
        if not self._keys:
            self._since = time.monotonic()
        self._pending.add(key)
        self._keys.append(key)
        self._arrays.append(stored)
        self._bytes += stored.nbytes
        if self._bytes >= self.part_bytes or (
                self.part_seconds is not None
                and time.monotonic() - self._since >= self.part_seconds):
            self.flush()

    def flush(self) -> str | None:
        """Commit the buffered embeddings as one part. NaN/Inf values (checked while writing)
        make it a :class:`CacheError` naming the sequences; the others are committed first."""
        if not self._keys:
            return None
        keys, arrays = self._keys, self._arrays
        self._keys, self._arrays, self._pending, self._bytes = [], [], set(), 0
        try:
            pid = write_part(self.store.path, keys, arrays, self.store.dtype,
                             self.store.cache.layout, self.store.fingerprint.to_dict())
        except NonFinite:
            bad = [i for i, a in enumerate(arrays) if not all_finite(a)]
            good = sorted(set(range(len(keys))) - set(bad))
            if good:
                self.part_ids.append(write_part(self.store.path, [keys[i] for i in good],
                                                [arrays[i] for i in good], self.store.dtype,
                                                self.store.cache.layout,
                                                self.store.fingerprint.to_dict()))
            raise CacheError(
                f"The embedding of {keys[bad[0]]}"
                + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
                + f" has NaN or Inf values once stored as {self.store.dtype}"
                + (" (float16 holds magnitudes up to 65504)" if self.store.dtype == "float16"
                   else "") + "; the other sequences were saved.",
                "Use storage dtype float32 for this encoder, or check the model's numerics."
            ) from None
        self.part_ids.append(pid)
        return pid

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.flush()
        self.store.refresh()
