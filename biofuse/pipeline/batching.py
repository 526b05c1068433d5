"""Token-budget batching and long-sequence windows.

Batches: sort by length (longest first, so an out-of-memory error shows up in the first batch)
and fill each batch while ``longest * count`` (the padded size the model really computes) stays
within the token budget, as fair-esm's ``get_batch_indices`` does. Nothing is padded to the
dataset's maximum.

Windows: a sequence longer than the encoder's context is cut into windows of ``context`` tokens
overlapping by ``overlap``; after embedding, each token takes its vector from the window in which
it sits farthest from an edge (the overlap is split at its middle), giving exactly one vector per
token of the full sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def token_budget_batches(lengths: Sequence[int], budget: int, specials: int = 0) -> list[list[int]]:
    """Index batches: each batch's ``(max length + specials) * size`` is at most ``budget``
    (a single sequence over budget gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        size = lengths[i] + specials
        if current and max(longest, size) * (len(current) + 1) > budget:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, size)
    if current:
        batches.append(current)
    return batches


def windows(n: int, context: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) token windows covering ``n`` tokens; one window when ``n <= context``."""
    if n <= context:
        return [(0, n)]
    if not 0 <= overlap < context:
        raise ValueError(f"overlap {overlap} must be in [0, {context})")
    stride = context - overlap
    starts = list(range(0, n - context, stride)) + [n - context]
    return [(s, s + context) for s in dict.fromkeys(starts)]


def owned(spans: Sequence[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """The [start, end) part of the sequence each window supplies: overlaps split at their
    middle, so every token comes from exactly one window."""
    out = []
    for k, (start, end) in enumerate(spans):
        own_start = 0 if k == 0 else (start + spans[k - 1][1]) // 2
        own_end = n if k == len(spans) - 1 else (spans[k + 1][0] + end) // 2
        out.append((own_start, own_end))
    return out


def stitch(pieces: Sequence, spans: Sequence[tuple[int, int]], n: int, cat=np.concatenate):
    """One [n, dim] array from window embeddings (numpy; or torch with ``cat=torch.cat``, which
    keeps gradients); overlaps are split at their middle."""
    if len(pieces) == 1:
        return pieces[0]
    return cat([piece[a - start:b - start] for piece, (start, _), (a, b)
                in zip(pieces, spans, owned(spans, n))])
