"""Long sequences and an encoder's context: overlapping windows, and stitching them back.

A sequence longer than the encoder's context is cut into windows of ``context`` tokens overlapping
by ``overlap``; after embedding, each token takes its vector from the window in which it sits
farthest from an edge (the overlap is split at its middle), giving exactly one vector per token of
the full sequence. ``extract`` embeds windows into the cache this way; ``finetune`` stitches torch
states with the same rule, so gradients flow through.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
