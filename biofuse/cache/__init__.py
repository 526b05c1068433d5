"""The embedding cache: content-addressed, crash-safe, lock-free; see docs/cache-format.md."""

from biofuse.cache.fingerprint import Fingerprint, sequence_key
from biofuse.cache.root import EmbeddingCache, default_cache_dir
from biofuse.cache.store import EmbeddingStore, Ragged

__all__ = ["EmbeddingCache", "EmbeddingStore", "Fingerprint", "Ragged", "default_cache_dir",
           "sequence_key"]
