"""What an extraction has to do: every sequence prepared for the encoder and hashed, and the
cache asked which are missing."""

from __future__ import annotations

from dataclasses import dataclass

from biofuse.cache import EmbeddingCache, EmbeddingStore, sequence_key
from biofuse.pipeline.encoders import Encoder


@dataclass
class ExtractPlan:
    encoder: Encoder
    store: EmbeddingStore
    rows: int
    rows_without_modality: int
    unique: int
    todo: list[tuple[str, str]]
    created: bool = False  # this run created the store (removed again if it stays empty)

    @property
    def cached(self) -> int:
        return self.unique - len(self.todo)


def plan(sequences: list[str | None], encoder: Encoder, cache_root) -> ExtractPlan:
    """Normalise and hash every sequence; ask the cache which are missing."""
    cache = EmbeddingCache(cache_root, create=True)
    fingerprint = encoder.fingerprint()
    created = not (cache.root / fingerprint.id).exists()
    store = cache.store(fingerprint)
    prepared: dict[str, str] = {}
    without = 0
    for seq in sequences:
        if not seq:
            without += 1
            continue
        p = encoder.prepare(seq)
        prepared.setdefault(sequence_key(p), p)
    missing = store.missing(prepared)
    return ExtractPlan(encoder, store, len(sequences), without, len(prepared),
                [(k, prepared[k]) for k in missing], created)

