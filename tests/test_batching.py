"""Token-budget batches and long-sequence windows."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from biofuse.pipeline.encoders.windows import stitch, windows
from biofuse.pipeline.extract.batching import token_budget_batches


@given(st.lists(st.integers(1, 500), max_size=60), st.integers(1, 2000), st.integers(0, 2))
def test_batches_cover_everything_within_budget(lengths, budget, specials):
    batches = token_budget_batches(lengths, budget, specials)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        padded = max(lengths[i] + specials for i in b) * len(b)
        assert padded <= budget or len(b) == 1


def test_batches_longest_first_and_no_padding_to_dataset_max():
    lengths = [10, 500, 12, 11, 490]
    batches = token_budget_batches(lengths, budget=1000)
    assert batches[0] == [1, 4]  # the long ones together
    assert sorted(batches[1]) == [0, 2, 3]  # the short ones are not padded to 500


@given(st.integers(1, 3000), st.integers(8, 600), st.data())
def test_windows_cover_and_stitch_exactly(n, context, data):
    overlap = data.draw(st.integers(0, context - 1))
    spans = windows(n, context, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == n
    assert all(e - s == min(n, context) for s, e in spans)
    assert all(b[0] <= a[1] for a, b in zip(spans, spans[1:]))  # no gaps
    # a per-token "encoder" whose output depends on the token only: stitching must be exact
    tokens = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    pieces = [tokens[s:e] for s, e in spans]
    np.testing.assert_array_equal(stitch(pieces, spans, n), tokens)


def test_stitch_takes_each_token_from_the_window_where_it_is_most_central():
    spans = windows(10, 6, 2)
    assert spans == [(0, 6), (4, 10)]
    pieces = [np.full((6, 1), k, dtype=np.float32) for k in range(2)]
    out = stitch(pieces, spans, 10)[:, 0]
    assert out.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]  # the overlap 4..6 is split at 5
