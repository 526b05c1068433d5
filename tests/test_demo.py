"""`biofuse demo`: a small grid plus a report, on the shipped example or the user's table."""

from __future__ import annotations

import polars as pl
import pytest
from click.testing import CliRunner

from biofuse.cli import main
from biofuse.examples import make_cds_example


def test_demo_runs_the_grid_and_writes_the_report(tmp_path):
    r = CliRunner().invoke(main, ["demo", "--out", str(tmp_path), "--epochs", "2",
                                  "--seeds", "1", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "# Results: demo" in r.output and "Chosen on validation" in r.output
    assert f"report: {tmp_path / 'report' / 'report.md'}" in r.output
    runs = pl.read_parquet(tmp_path / "experiment" / "runs.parquet")
    # dna, rna, protein alone; concat; mil without and with the entropy term
    assert runs.height == 6 and set(runs["status"]) == {"complete"}
    assert (tmp_path / "report" / "mil-weights.png").is_file()


def test_demo_on_the_users_table(tmp_path):
    make_cds_example(n=60, n_codons=10).drop("upstream").write_csv(tmp_path / "mine.csv")
    args = ["demo", "--data", str(tmp_path / "mine.csv"), "--out", str(tmp_path / "d"),
            "--epochs", "2", "--seeds", "1", "--workers", "1"]
    r = CliRunner().invoke(main, args)  # 'expression' is not a column name biofuse detects
    assert r.exit_code == 2 and "no label column was found" in r.output, r.output
    r = CliRunner().invoke(main, [*args, "--label-col", "expression"])
    assert r.exit_code == 0, r.output
    assert "## data" in r.output


@pytest.mark.slow
def test_the_demo_shows_what_fusion_is_for(tmp_path):
    """The default demo: MIL beats every single modality on validation and test, and gives the
    signal-free DNA region (almost) no weight."""
    import biofuse

    result = biofuse.demo(out=tmp_path, echo=lambda s: None)
    table = result.experiment.results
    best = table.filter(pl.col("chosen")).row(0, named=True)
    singles = table.filter(pl.col("fusion") == "none")
    assert best["fusion"] != "none"
    assert best["val_mean"] > singles["val_mean"].max()
    assert best["test_mean"] > singles["test_mean"].max()
    page = result.report.read_text()
    no_entropy = next(line for line in page.splitlines()
                      if line.startswith("| example | no entropy term |"))
    dna_weight = float(no_entropy.split("|")[3])
    assert dna_weight < 0.1
