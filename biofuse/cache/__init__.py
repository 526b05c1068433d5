"""The embedding cache: content-addressed, crash-safe, lock-free; see docs/cache-format.md."""

from biofuse.cache.fingerprint import Fingerprint, sequence_key
from biofuse.cache.store import EmbeddingCache, EmbeddingStore, Ragged, default_cache_dir

__all__ = ["EmbeddingCache", "EmbeddingStore", "Fingerprint", "Ragged", "default_cache_dir",
           "sequence_key"]
