"""Fusion never loses to its best member: when only one modality carries the signal, concat and
MIL match the model of that modality alone (within one standard deviation over seeds).

Slow (15 fits per case, several minutes on 2 cores): ``pytest -m slow``."""

from __future__ import annotations

import polars as pl
import pytest

import biofuse
from tests.test_fit import planted


@pytest.mark.slow
@pytest.mark.parametrize("signal", [
    "protein",
    pytest.param("rna", marks=pytest.mark.xfail(
        reason="measured: concat val 0.901 vs the RNA-only model's 0.920 - 0.010 (issue #13)",
        strict=False)),
])
def test_fusion_matches_its_best_member_when_one_modality_carries_signal(tmp_path, signal):
    table, ids = planted(tmp_path, n=240, signal=signal)
    (tmp_path / "exp.toml").write_text("\n".join([
        "seeds = [0, 1, 2]", 'cache = "cache"',
        "[datasets.planted]", f'path = "{table.name}"',
        "[encoders]", *[f'{m} = "{fp}"' for m, fp in ids.items()],
        "[[fit]]", 'fusion = "none"', 'modalities = ["dna", "rna", "protein"]',
        "epochs = 40", "patience = 10",
        "[[fit]]", 'fusion = ["concat", "mil"]', "epochs = 40", "patience = 10"]) + "\n")
    result = biofuse.run(tmp_path / "exp.toml", workers=1, progress=False)
    assert result.ok
    table_ = result.results
    singles = table_.filter(pl.col("fusion") == "none").sort("val_mean", descending=True)
    best = singles.row(0, named=True)
    assert best["modalities"] == signal  # the signal's own modality is the best single one
    for fusion in ("concat", "mil"):
        row = table_.filter(pl.col("fusion") == fusion).row(0, named=True)
        for split in ("val", "test"):
            floor = best[f"{split}_mean"] - best[f"{split}_std"]
            assert row[f"{split}_mean"] >= floor, (fusion, split, row[f"{split}_mean"], floor)
