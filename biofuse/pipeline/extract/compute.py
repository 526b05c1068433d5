"""The work of `biofuse extract`, the same in-process and on a Dask worker: tokenize, window or
truncate long sequences, build token-budget batches, embed (halving a batch on out-of-memory),
stitch windows, and write to the cache, which commits parts atomically."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from biofuse.cache import EmbeddingStore
from biofuse.errors import BiofuseError
from biofuse.pipeline.encoders import Encoder
from biofuse.pipeline.encoders.windows import stitch, windows
from biofuse.pipeline.extract.batching import token_budget_batches

#: commit finished embeddings at least this often, so an interrupted run keeps its work
DEFAULT_COMMIT_SECONDS = 30.0


class OutOfMemory(BiofuseError):
    """A single sequence does not fit in memory."""


@dataclass
class Counts:
    """What ``compute`` did; summed over workers."""

    computed: int = 0
    tokens: int = 0
    dropped_long: int = 0
    truncated: int = 0
    windowed: int = 0
    oom_splits: int = 0
    forward_seconds: float = 0.0

    def add(self, other: Counts) -> None:
        for k, v in asdict(other).items():
            setattr(self, k, getattr(self, k) + v)


def is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text \
        or "can't allocate memory" in text


def embed_with_fallback(encoder: Encoder, batch: list[list[int]], counts: Counts) -> list[np.ndarray]:
    """``encoder.forward``; on out-of-memory, halve the batch and retry, down to one sequence."""
    try:
        return encoder.forward(batch)
    except Exception as exc:
        if not is_oom(exc):
            raise
        _free_accelerator_memory()
        if len(batch) == 1:
            raise OutOfMemory(
                f"One sequence of {len(batch[0])} tokens does not fit in memory on "
                f"{encoder.request.device}.",
                "Use --long window with a smaller context, a smaller --dtype (bf16), or a "
                "device with more memory.") from exc
        counts.oom_splits += 1
        half = len(batch) // 2
        return (embed_with_fallback(encoder, batch[:half], counts)
                + embed_with_fallback(encoder, batch[half:], counts))


def _free_accelerator_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def compute(encoder: Encoder, items: list[tuple[str, str]], store: EmbeddingStore,
            batch_tokens: int, on_batch: Callable[[int, int], None] | None = None,
            commit_seconds: float = DEFAULT_COMMIT_SECONDS) -> Counts:
    """Embed ``items`` (key, prepared sequence) and commit them to ``store``."""
    request = encoder.request
    context = encoder.context
    counts = Counts()
    units: list[tuple[int, int, list[int]]] = []  # (item, window number, ids)
    spans: dict[int, list[tuple[int, int]]] = {}
    lengths: dict[int, int] = {}
    for idx, (_, seq) in enumerate(items):
        ids = encoder.tokenize(seq)
        if len(ids) > context:
            if request.long_policy == "drop":
                counts.dropped_long += 1
                continue
            if request.long_policy == "truncate":
                ids = ids[:context]
                counts.truncated += 1
            else:
                counts.windowed += 1
        spans[idx] = windows(len(ids), context, min(request.window_overlap, context - 1))
        lengths[idx] = len(ids)
        units.extend((idx, k, ids[s:e]) for k, (s, e) in enumerate(spans[idx]))
    batches = token_budget_batches([len(u[2]) for u in units], batch_tokens,
                                   getattr(encoder, "n_specials", 0))
    pieces: dict[int, dict[int, np.ndarray]] = {}
    with store.writer(part_seconds=commit_seconds) as writer:
        for batch in batches:
            t = time.perf_counter()
            outs = embed_with_fallback(encoder, [units[j][2] for j in batch], counts)
            counts.forward_seconds += time.perf_counter() - t
            n_tokens, done = 0, 0
            for j, out in zip(batch, outs, strict=True):
                idx, k, ids = units[j]
                assert out.shape[0] == (1 if encoder.per_sequence else len(ids)), \
                    "an encoder returned the wrong number of tokens"
                got = pieces.setdefault(idx, {})
                got[k] = out
                n_tokens += len(ids)
                if len(got) == len(spans[idx]):
                    emb = stitch([got[i] for i in range(len(got))], spans[idx], lengths[idx])
                    writer.add(items[idx][0], emb)
                    del pieces[idx]
                    done += 1
            counts.computed += done
            counts.tokens += n_tokens
            if on_batch:
                on_batch(done, n_tokens)
    return counts


