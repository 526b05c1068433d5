"""The shipped example table is exactly what its generator produces (not edited by hand)."""

import polars as pl
from polars.testing import assert_frame_equal

from biofuse.examples import EXAMPLE_CSV, make_cds_example


def test_shipped_example_matches_generator():
    assert_frame_equal(pl.read_csv(EXAMPLE_CSV), make_cds_example())
