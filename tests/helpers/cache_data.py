"""Deterministic synthetic embeddings: the same key always gives the same array, in any process."""

from __future__ import annotations

import hashlib

import numpy as np

from biofuse.cache import Fingerprint, sequence_key

FP = Fingerprint("test/encoder", revision="r1", layer=-1, compute_dtype="fp32")


def keys(n: int, offset: int = 0) -> list[str]:
    return [sequence_key(f"SEQ{i}") for i in range(offset, offset + n)]


def embedding(key: str, dim: int = 16, max_len: int = 60) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    length = int(rng.integers(1, max_len))
    return rng.standard_normal((length, dim)).astype(np.float32)
