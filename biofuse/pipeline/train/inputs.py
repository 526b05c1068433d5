"""A dataset's cached embeddings, loaded once into memory and cut into padded batches for a model.

``find_store`` picks, for a modality and an encoder, the cache store that holds its embeddings
(the encoder's model id comes from the registry's ``model_id``, the same function extract's
fingerprint uses, or a fingerprint id is given directly). ``ModalityTable`` holds one modality's
embeddings for every row, in the encoder's own tokens, as one flat float16 tensor plus offsets,
and gathers a padded [B, T, D] batch with one indexing operation. ``ModelInputs`` is every
modality of a dataset plus its codon grid: what ``fit`` trains on and ``predict`` scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from biofuse.cache import EmbeddingCache, EmbeddingStore, sequence_key
from biofuse.errors import CacheError, ConfigError, DataError
from biofuse.modality import Modality
from biofuse.pipeline.data import Dataset, dogma
from biofuse.pipeline.encoders import autocast, model_id


def find_store(cache: EmbeddingCache, modality: Modality, encoder: str, keys: list[str],
               extract_hint: str) -> EmbeddingStore:
    """The store with ``encoder``'s embeddings of ``modality`` covering ``keys``."""
    if encoder in cache.fingerprint_ids():
        candidates = [cache.open_id(encoder)]
    else:
        wanted = model_id(encoder, modality)
        candidates = [s for s in cache.stores() if s.fingerprint.model_id == wanted
                      and s.fingerprint.modality == modality]
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
        listing = "; ".join(f"{s.id} (layer {s.fingerprint.layer}, {s.fingerprint.compute_dtype}, "
                            f"{s.fingerprint.long_policy})" for s in full)
        raise CacheError(f"Several {modality} embeddings of {encoder} cover this dataset: "
                         f"{listing}.", f"Choose one with --encoder {modality}=FINGERPRINT_ID.")
    return full[0]


@dataclass
class ModalityTable:
    """One modality's embeddings for all rows: ``flat`` [tokens + 1, D] (last row zeros),
    ``start`` and ``length`` per row (length 0 where the row lacks the modality), in the
    encoder's own tokens (``nt_per_token`` nucleotides each)."""

    flat: torch.Tensor
    start: torch.Tensor
    length: torch.Tensor
    dim: int
    nt_per_token: int

    @classmethod
    def load(cls, store: EmbeddingStore, sequences: list[str | None]) -> ModalityTable:
        rows = [i for i, s in enumerate(sequences) if s]
        keys = [sequence_key(sequences[i]) for i in rows]
        ragged = store.load(keys, dtype="float16")
        dim = ragged.data.shape[1]
        flat = torch.from_numpy(np.concatenate([ragged.data, np.zeros((1, dim), np.float16)]))
        start = torch.full((len(sequences),), flat.shape[0] - 1, dtype=torch.long)
        length = torch.zeros(len(sequences), dtype=torch.long)
        start[rows] = torch.from_numpy(ragged.offsets[:-1].astype(np.int64))
        length[rows] = torch.from_numpy(ragged.lengths.astype(np.int64))
        return cls(flat, start, length, dim, store.fingerprint.nt_per_token)

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded float32 [B, T, D], mask [B, T], present [B] for ``rows``."""
        length = self.length[rows]
        width = max(int(length.max()), 1)
        pos = torch.arange(width)[None, :]
        mask = pos < length[:, None]
        idx = torch.where(mask, self.start[rows][:, None] + pos, self.flat.shape[0] - 1)
        return self.flat[idx].float(), mask, length > 0


@dataclass
class ModelInputs:
    """Every modality's embeddings of a dataset, its codon grid, and where they came from."""

    tables: dict[Modality, ModalityTable]
    grid: torch.Tensor  # [N] codons per row
    fingerprints: dict[str, dict]  # modality -> {"store": id, "fingerprint": {...}}

    def lengths(self, aligned: bool) -> np.ndarray:
        """Positions per row a model sees: the codon grid, or the longest modality's tokens."""
        if aligned:
            return self.grid.numpy()
        return torch.stack([t.length for t in self.tables.values()]).max(0).values.numpy()

    def pooled(self, pool: str = "mean", chunk_tokens: int = 1 << 20) -> np.ndarray:
        """One float32 vector per row: each modality's tokens pooled (``mean``, or ``meanmax``:
        mean and max side by side), the modalities concatenated in the order of ``tables``; a
        row without a modality gets zeros there. What the scikit-learn probes read."""
        parts = []
        for table in self.tables.values():
            n, dim = len(table.length), table.dim
            width = dim * (2 if pool == "meanmax" else 1)
            out = np.zeros((n, width), dtype=np.float32)
            rows = np.flatnonzero(table.length.numpy() > 0)
            starts, lengths = table.start.numpy()[rows], table.length.numpy()[rows]
            begin = 0
            while begin < len(rows):  # a chunk of rows at a time, in float32
                end = begin + 1
                while end < len(rows) and lengths[begin:end + 1].sum() <= chunk_tokens:
                    end += 1
                lo, hi = int(starts[begin]), int(starts[end - 1] + lengths[end - 1])
                flat = table.flat[lo:hi].float().numpy()
                at = (starts[begin:end] - lo).astype(np.int64)
                sums = np.add.reduceat(flat, at, axis=0)
                out[rows[begin:end], :dim] = sums / lengths[begin:end, None]
                if pool == "meanmax":
                    out[rows[begin:end], dim:] = np.maximum.reduceat(flat, at, axis=0)
                begin = end
            parts.append(out)
        return np.concatenate(parts, axis=1) if parts else np.zeros((len(self.grid), 0))

    def batch(self, rows: np.ndarray):
        """The model's inputs for ``rows``: feats, masks, present per modality, and the grid."""
        r = torch.from_numpy(rows)
        feats, masks, present = {}, {}, {}
        for m, table in self.tables.items():
            feats[m], masks[m], present[m] = table.batch(r)
        return feats, masks, present, self.grid[r]


def load_inputs(ds: Dataset, encoders: Mapping[Modality, str], cache_root, *, aligned: bool,
                extract_hint) -> ModelInputs:
    """Load the embeddings of every modality in ``encoders`` (modality -> encoder name or
    fingerprint id) for every row of ``ds``. ``extract_hint(modality, encoder)`` is the command
    that computes missing embeddings, quoted in the error when some are missing."""
    cache = EmbeddingCache(cache_root)
    frame = ds.frame
    tables, fps = {}, {}
    for m, encoder in encoders.items():
        seqs = frame[m.column].to_list()
        if not any(seqs):
            raise DataError(f"No row of {ds.spec.path} has a {m} sequence.",
                            "Drop it from --modalities, or give the dataset an mRNA/CDS column "
                            "from which it can be derived.")
        keys = [sequence_key(s) for s in seqs if s]
        store = find_store(cache, m, encoder, keys, extract_hint(m, encoder))
        if aligned and store.fingerprint.nt_per_token == 0:
            raise ConfigError(f"{encoder} gives one vector per {m} sequence, which has no place "
                              "on the codon grid an aligned fusion needs.",
                              "Use a scikit-learn head (--head ridge, gbm or logistic), or "
                              "--fusion none, seqconcat or isoformer.")
        tables[m] = ModalityTable.load(store, seqs)
        fps[str(m)] = {"store": store.id, "fingerprint": store.fingerprint.to_dict()}
    rna, protein = frame[Modality.RNA.column].to_list(), frame[Modality.PROTEIN.column].to_list()
    grid = torch.tensor([dogma.n_codons(len(r)) if r else (len(p) if p else 0)
                         for r, p in zip(rna, protein)], dtype=torch.long)
    if aligned and len(grid) and int(grid.min()) == 0:
        raise DataError("Some rows have neither an mRNA nor a protein, so they have no codon "
                        "grid for an aligned fusion.",
                        "Use --fusion seqconcat or isoformer, which need no grid.")
    return ModelInputs(tables, grid, fps)


def model_outputs(model: torch.nn.Module, inputs: ModelInputs, rows: np.ndarray,
                 batches: list[np.ndarray] | None = None, batch_size: int = 32,
                 dtype: str = "fp32"):
    """Raw outputs [N, outputs] and per-row modality weights (MIL) for ``rows``, in order.
    ``batches``: how to cut ``rows`` (default: consecutive runs of ``batch_size``)."""
    model.eval()
    if batches is None:
        batches = [rows[b:b + batch_size] for b in range(0, len(rows), batch_size)]
    position = {int(r): i for i, r in enumerate(rows)}
    out: np.ndarray | None = None
    weights: dict[str, np.ndarray] = {}
    with torch.no_grad(), autocast(dtype):
        for batch in batches:
            pred, fused = model(*inputs.batch(batch))
            at = np.array([position[int(r)] for r in batch], dtype=np.int64)
            if out is None:
                out = np.zeros((len(rows), pred.shape[1]), dtype=np.float32)
            out[at] = pred.float().numpy()
            for m, w in fused.weights.items():
                weights.setdefault(m, np.zeros(len(rows), dtype=np.float32))[at] = \
                    w.float().numpy()
    return (out if out is not None else np.zeros((0, 1), np.float32)), weights
