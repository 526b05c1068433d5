"""Token-budget batches for an encoder.

Sort by length (longest first, so an out-of-memory error shows up in the first batch) and fill
each batch while ``longest * count`` (the padded size the model really computes) stays within the
token budget, as fair-esm's ``get_batch_indices`` does. Nothing is padded to the dataset's
maximum.
"""

from __future__ import annotations

from collections.abc import Sequence


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
