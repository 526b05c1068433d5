"""A dataset's cached embeddings, loaded once into memory and cut into padded batches.

``find_store`` picks, for a modality and an encoder, the cache store that holds its embeddings
(by the model id recorded in the fingerprint, or by a fingerprint id given directly);
``ModalityTable`` holds one modality's embeddings for every row as one flat float16 tensor plus
offsets, and gathers a padded [B, T, D] batch with one indexing operation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from biofuse.cache import EmbeddingCache, EmbeddingStore, sequence_key
from biofuse.errors import CacheError
from biofuse.pipeline.encoders import encoder_info
from biofuse.pipeline.encoders.hub import local_or_hub


def _model_id(encoder: str, modality: str) -> str:
    info = encoder_info(encoder, modality)
    if info is None:
        return local_or_hub(encoder)
    return f"onehot-{modality}" if info.family == "onehot" else info.source


def find_store(cache: EmbeddingCache, modality: str, encoder: str, keys: list[str],
               extract_hint: str) -> EmbeddingStore:
    """The store with ``encoder``'s embeddings of ``modality`` covering ``keys``."""
    if encoder in cache.fingerprint_ids():
        candidates = [cache.open_id(encoder)]
    else:
        model_id = _model_id(encoder, modality)
        candidates = [s for s in cache.stores() if s.fingerprint.model_id == model_id
                      and s.fingerprint.extra.get("modality", modality) == modality]
    if not candidates:
        raise CacheError(f"The cache {cache.root} has no {modality} embeddings of {encoder}.",
                         f"Run `{extract_hint}` first.")
    need = set(keys)
    coverage = [(sum(k in s for k in need), s) for s in candidates]
    best = max(c for c, _ in coverage)
    full = [s for c, s in coverage if c == best]
    if best < len(need):
        raise CacheError(
            f"{len(need) - best} of {len(need)} {modality} sequences of this dataset are missing "
            f"from the cache {cache.root} for {encoder}.", f"Run `{extract_hint}` to compute them.")
    if len(full) > 1:
        listing = "; ".join(f"{s.id} (layer {s.fingerprint.layer}, {s.fingerprint.dtype}, "
                            f"{s.fingerprint.long_policy})" for s in full)
        raise CacheError(f"Several {modality} embeddings of {encoder} cover this dataset: "
                         f"{listing}.", f"Choose one with --encoder {modality}=FINGERPRINT_ID.")
    return full[0]


@dataclass
class ModalityTable:
    """One modality's embeddings for all rows: ``flat`` [tokens + 1, D] (last row zeros),
    ``start`` and ``length`` per row (length 0 where the row lacks the modality)."""

    flat: torch.Tensor
    start: torch.Tensor
    length: torch.Tensor
    dim: int
    nt_per_token: int

    @classmethod
    def load(cls, store: EmbeddingStore, sequences: list[str | None], pool: int = 1
             ) -> ModalityTable:
        rows = [i for i, s in enumerate(sequences) if s]
        keys = [sequence_key(sequences[i]) for i in rows]
        ragged = store.load(keys, pool=pool, dtype="float16")
        dim = ragged.data.shape[1]
        flat = torch.from_numpy(np.concatenate([ragged.data, np.zeros((1, dim), np.float16)]))
        start = torch.full((len(sequences),), flat.shape[0] - 1, dtype=torch.long)
        length = torch.zeros(len(sequences), dtype=torch.long)
        start[rows] = torch.from_numpy(ragged.offsets[:-1].astype(np.int64))
        length[rows] = torch.from_numpy(ragged.lengths.astype(np.int64))
        nt = int(store.fingerprint.extra.get("nt_per_token", 3))
        return cls(flat, start, length, dim, nt * pool if pool > 1 else nt)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded float32 [B, T, D], mask [B, T], present [B] for ``rows``."""
        length = self.length[rows]
        width = max(int(length.max()), 1)
        pos = torch.arange(width)[None, :]
        mask = pos < length[:, None]
        idx = torch.where(mask, self.start[rows][:, None] + pos, self.flat.shape[0] - 1)
        return self.flat[idx].float(), mask, length > 0
