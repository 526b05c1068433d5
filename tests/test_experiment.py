"""`biofuse run`: experiment files validated whole, grids run and resumed, results tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

import biofuse
from biofuse.cli import main
from biofuse.examples import make_cds_example
from biofuse.pipeline.experiment import ExperimentError, load_experiment, make_plan, run_experiment
from biofuse.references import load_references


def table(path, n=60, seed=0, codons=10):
    make_cds_example(n=n, n_codons=codons, seed=seed).write_csv(path)
    return path


def write_toml(tmp_path, datasets=("a",), seeds=(0, 1), extra="", name="exp.toml"):
    lines = [f"seeds = {list(seeds)}", 'cache = "cache"']
    for i, d in enumerate(datasets):
        table(tmp_path / f"{d}.csv", seed=i)
        lines += [f"[datasets.{d}]", f'path = "{d}.csv"', 'label_cols = ["expression"]']
    lines += ["[encoders]", 'dna = "onehot"', 'rna = ["onehot", "onehot_codon"]',
              'protein = "onehot"',
              "[[fit]]", 'fusion = "none"', 'modalities = ["rna", "protein"]', "epochs = 2",
              "[[fit]]", 'fusion = ["concat", "mil"]', "epochs = 2",
              'encoders = { rna = "onehot_codon" }', "mil = { dim = [8, 16] }",
              "textcnn = { channels = 8 }", extra]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_grid_expands_axes_and_methods_options(tmp_path):
    exp = load_experiment(write_toml(tmp_path))
    # singles: rna x 2 encoders + protein = 3; concat 1; mil 2 dims -> 6 configs x 2 seeds
    assert len(exp.tasks) == 12
    mil = [t for t in exp.tasks if t.options["fusion"] == "mil"]
    assert sorted({t.options["fusion_options"]["dim"] for t in mil}) == [8, 16]
    concat = [t for t in exp.tasks if t.options["fusion"] == "concat"]
    assert all(t.options["fusion_options"] == {} for t in concat)  # mil's table is mil's only
    assert all(t.encoders["rna"] == "onehot_codon" for t in concat + mil)
    assert all(t.options["head_options"] == {"channels": 8} for t in concat + mil)
    assert all(t.options["head_options"] == {} for t in exp.tasks if t.group == "fit1")


def test_a_search_axis_does_not_repeat_fits_of_other_fusions(tmp_path):
    path = write_toml(tmp_path, extra="")
    text = path.read_text().replace('fusion = ["concat", "mil"]',
                                    'fusion = ["concat", "mil"]\nentropy_weights = [[0.0], [0.1]]')
    path.write_text(text)
    exp = load_experiment(path)
    concat = [t for t in exp.tasks if t.options["fusion"] == "concat"]
    assert len(concat) == 2  # one per seed, not one per entropy weight
    assert len([t for t in exp.tasks if t.options["fusion"] == "mil"]) == 2 * 2 * 2


def test_every_problem_of_a_broken_file_is_reported_at_once(tmp_path):
    table(tmp_path / "ok.csv")
    (tmp_path / "bad.toml").write_text("\n".join([
        'nmae = "x"', "seeds = [-1]",
        "[datasets.gone]", 'path = "missing.csv"',
        "[datasets.ok]", 'path = "ok.csv"', 'label_cols = "nope"', 'sequnce_col = "x"',
        "[encoders]", 'protein = ["esm2_t6_8m"]', 'rnaa = "onehot"',
        "[extract]", 'dtype = "fp64"',
        "[[fit]]", 'fusion = ["mil", "concatt"]', "lr = [0.001, -1]", "mil = { dimm = 3 }",
        "xattn = { dim = 8 }"]))
    with pytest.raises(ExperimentError) as info:
        load_experiment(tmp_path / "bad.toml")
    text = "\n".join(info.value.problems)
    for expected in ["unknown key 'nmae' (did you mean 'name'?)", "seeds = [-1]",
                     "missing.csv does not exist", "'sequnce_col' (did you mean 'sequence_col'?)",
                     "'rnaa' (did you mean 'rna'?)", "'esm2_t6_8m' (did you mean 'esm2_t6_8M'?",
                     "--dtype 'fp64'", "'concatt' (did you mean 'concat'?)",
                     "'dimm' (did you mean 'dim'?)", "options for xattn", "--lr -1",
                     "no column 'nope'"]:
        assert expected in text, expected
    assert len(info.value.problems) == 12
    result = CliRunner().invoke(main, ["run", str(tmp_path / "bad.toml")])
    assert result.exit_code == 2
    assert "has 12 problems" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "bad").exists()  # nothing ran, nothing written


def test_toml_syntax_error_and_missing_file_are_one_paragraph(tmp_path):
    (tmp_path / "x.toml").write_text("seeds = [0,\n")
    r = CliRunner().invoke(main, ["run", str(tmp_path / "x.toml")])
    assert r.exit_code == 2 and "is not valid TOML" in r.output
    r = CliRunner().invoke(main, ["run", str(tmp_path / "none.toml")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_run_writes_results_and_chooses_on_validation(tmp_path):
    result = biofuse.run(write_toml(tmp_path), workers=1)
    out = tmp_path / "exp"
    for name in ("results.parquet", "results.csv", "results.md", "runs.parquet",
                 "experiment.toml"):
        assert (out / name).stat().st_size > 0
    runs = pl.read_parquet(out / "runs.parquet")
    assert runs.height == 12 and set(runs["status"]) == {"complete"}
    table_ = result.results
    assert table_.height == 6 and set(table_["complete"]) == {2}
    best = table_.sort("val_mean", descending=True).row(0, named=True)
    assert table_.filter(pl.col("chosen"))["config_id"].to_list() == [best["config_id"]]
    mil = table_.filter(pl.col("fusion") == "mil")
    assert sorted(mil["options"].to_list()) == ["mil.dim=16, textcnn.channels=8",
                                                "mil.dim=8, textcnn.channels=8"]
    one = runs.filter(pl.col("config_id") == best["config_id"])
    assert best["val_mean"] == pytest.approx(one["val"].mean())
    assert "★" in (out / "results.md").read_text()


def test_killed_grid_resumes_to_the_uninterrupted_result(tmp_path):
    path = write_toml(tmp_path)
    exp = load_experiment(path, out=tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        run_experiment(exp, workers=1, progress=False, stop_after=5)
    partial = pl.read_parquet(tmp_path / "killed" / "runs.parquet")  # written when killed too
    assert partial.filter(pl.col("status") == "complete").height == 5
    plan = make_plan(exp)
    assert len(plan.todo) == 12 - 5
    resumed = run_experiment(exp, workers=1, progress=False)
    assert resumed.ran == 7
    straight = biofuse.run(path, out=tmp_path / "straight", workers=1, progress=False)
    cols = ["dataset", "config_id", "val_mean", "test_mean", "epochs"]
    assert resumed.results.select(cols).equals(straight.results.select(cols))
    again = biofuse.run(path, out=tmp_path / "killed", workers=1, progress=False)
    assert again.ran == 0  # everything finished: nothing runs


def test_a_new_dataset_or_seed_computes_only_what_is_new(tmp_path):
    path = write_toml(tmp_path, datasets=("a",), seeds=(0,))
    biofuse.run(path, workers=1, progress=False)
    # dataset b shares 20 of its 60 sequences with a
    a = pl.read_csv(tmp_path / "a.csv")
    b = pl.concat([a.head(20).with_columns(pl.format("b{}", "id").alias("id")),
                   make_cds_example(n=40, n_codons=10, seed=7)])
    b.write_csv(tmp_path / "b.csv")
    text = path.read_text().replace("[encoders]", '[datasets.b]\npath = "b.csv"\n'
                                    'label_cols = ["expression"]\n[encoders]')
    path.write_text(text.replace("seeds = [0]", "seeds = [0, 1]"))
    plan = biofuse.plan(path)
    assert {s.todo for s in plan.stages} == {40}  # per encoder: b's 40 new sequences only
    assert len(plan.fits) == 24 and len(plan.todo) == 24 - 6  # a's seed-0 fits are done
    result = biofuse.run(path, workers=1, progress=False)
    assert result.ran == 18 and result.ok


def test_a_failing_fit_is_recorded_and_the_others_finish(tmp_path):
    # MIL's shared projection needs modalities of one dim: one-hot DNA and protein differ,
    # which only the fit finds out
    path = write_toml(tmp_path, seeds=(0,),
                      extra="[[fit]]\nfusion = \"mil\"\nepochs = 2\n"
                            "mil = { shared_projection = true }")
    r = CliRunner().invoke(main, ["run", str(path), "--workers", "1"])
    assert r.exit_code == 3, r.output
    assert "2 fit(s) failed" in r.output  # one per RNA encoder
    runs = pl.read_parquet(tmp_path / "exp" / "runs.parquet")
    failed = runs.filter(pl.col("status") == "failed")
    assert failed.height == 2 and "shared MIL projection" in failed["error"][0]
    assert runs.filter(pl.col("status") == "complete").height == runs.height - 2 == 6
    assert "## Failed fits" in (tmp_path / "exp" / "results.md").read_text()


def test_dry_run_plans_without_computing(tmp_path):
    path = write_toml(tmp_path)
    r = CliRunner().invoke(main, ["run", str(path), "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.output)
    assert plan["fits"] == {"total": 12, "finished": 0, "to_run": 12}
    assert {(e["modality"], e["encoder"], e["to_compute"]) for e in plan["extract"]} == {
        ("rna", "onehot", 60), ("rna", "onehot_codon", 60), ("protein", "onehot", 60),
        ("dna", "onehot", 60)}
    assert not (tmp_path / "exp").exists()
    assert not list((tmp_path / "cache").glob("*/zarr.json"))  # no store was left behind


@pytest.mark.slow  # processes and clusters: seconds each; CI runs them
def test_fits_run_on_a_two_worker_dask_cluster(tmp_path, monkeypatch):
    from biofuse.pipeline.experiment import fits

    monkeypatch.setattr(fits, "HEARTBEAT", 0.2)  # a "still running" line this often
    path = write_toml(tmp_path, seeds=(0,))
    lines = []
    result = biofuse.run(path, workers=2, progress=False, echo=lines.append)
    assert result.ok and result.ran == 6
    assert set(result.runs["status"]) == {"complete"}
    assert any("2 in parallel x 1 torch thread(s) each" in line for line in lines)
    assert any("so far" in line for line in lines)  # the heartbeat
    assert sum(line.startswith("fit a ") for line in lines) == 6


@pytest.mark.slow  # processes and clusters: seconds each; CI runs them
def test_local_workers_keep_glibcs_own_memory_trimming(monkeypatch):
    """Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which made torch fault its
    activations back in every step (docs/experiments.md); biofuse's local clusters leave it
    out, and a value the user set is passed on."""
    import os
    import warnings

    from distributed import Client, LocalCluster

    from biofuse.pipeline.extract.distributed import connect, local_cluster

    def trim():
        return os.environ.get("MALLOC_TRIM_THRESHOLD_")

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with local_cluster(1, "cpu") as cluster, Client(cluster) as client:
        assert list(client.run(trim).values()) == [None]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            connect(cluster.scheduler_address).close()  # nothing to warn about
    # a cluster of the user's, started with Dask's defaults: connecting says what it costs
    with (LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                       dashboard_address=":0") as cluster,
          pytest.warns(UserWarning, match="1 of the cluster's 1 workers run with "
                       "MALLOC_TRIM_THRESHOLD_=65536")):
        connect(cluster.scheduler_address).close()
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1048576")
    with local_cluster(1, "cpu") as cluster, Client(cluster) as client:
        assert list(client.run(trim).values()) == ["1048576"]


@pytest.mark.slow
def test_unreachable_scheduler_is_a_clean_error(tmp_path):
    path = write_toml(tmp_path, seeds=(0,))
    r = CliRunner().invoke(main, ["run", str(path), "--scheduler", "tcp://127.0.0.1:9"])
    assert r.exit_code == 2 and "No Dask scheduler answers" in r.output


def test_the_shipped_annotated_example_is_valid():
    from biofuse.examples import EXAMPLE_CSV

    exp = load_experiment(EXAMPLE_CSV.with_name("experiment.toml"), out="/tmp/unused")
    # singles: rna x 2 encoders + protein = 3; concat: 2 rna x 2 lr = 4; mil: 2 rna x 2 lr x
    # 2 entropy x 2 dims = 16; each x 3 seeds
    assert len(exp.tasks) == (3 + 4 + 16) * 3


@pytest.mark.slow  # processes and clusters: seconds each; CI runs them
def test_fits_run_on_an_existing_cluster_given_by_its_address(tmp_path):
    from distributed import LocalCluster

    path = write_toml(tmp_path, seeds=(0,))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster:
        lines = []
        result = biofuse.run(path, scheduler=cluster.scheduler_address, progress=False,
                             echo=lines.append)
    assert result.ok and result.ran == 6
    assert any(f"on the Dask cluster at {cluster.scheduler_address}" in line for line in lines)
    config = json.loads((result.plan.fits[0].run_dir / "config.json").read_text())
    assert config["fit"]["threads"] is None  # the worker's own setting, not this machine's


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).resolve().parents[1]
                                                          / "docs" / "examples").glob("*.toml")))
def test_the_experiment_files_behind_the_results_page_are_valid(name, real_table):
    """docs/examples/*.toml read the shared benchmark tables: valid, and their plan made (it
    names every run directory), wherever those tables are present."""
    for table in ("cov_vac", "mrfp", "mlos"):
        real_table(table)  # skips when the shared data is absent
    path = Path(__file__).resolve().parents[1] / "docs" / "examples" / name
    if name == "isoformer.toml":
        pytest.skip("reads the user's IsoFormer table: test_the_isoformer_example_reproduces_"
                    "tables_4_and_8")
    exp = load_experiment(path, load_data=False)
    assert exp.tasks and all(t.dataset in exp.datasets for t in exp.tasks)


def test_the_isoformer_example_reproduces_tables_4_and_8(tmp_path):
    """docs/examples/isoformer.toml on a table of its shape: Table 8's three DNA encoders under
    isoformer, Table 4's three other aggregations on Enformer, every seed."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "examples" /
            "isoformer.toml").read_text()
    tissues = re.search(r"label_cols = (\[.*?\])", text).group(1)
    rows = {"dna": ["ACGT" * 40] * 6, "rna": ["AUGGCC" * 10] * 6, "protein": ["MA" * 10] * 6}
    rows.update({t: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] for t in json.loads(tissues)})
    pl.DataFrame(rows).write_parquet(tmp_path / "isoform_expression.parquet")
    (tmp_path / "isoformer.toml").write_text(text)
    exp = load_experiment(tmp_path / "isoformer.toml", load_data=False)
    grid = sorted({(t.options["fusion"], t.encoders["dna"]) for t in exp.tasks})
    assert grid == sorted([("isoformer", "enformer"), ("isoformer", "borzoi"),
                           ("isoformer", "nt_v2_500m"), ("perceiver_xattn", "enformer"),
                           ("perceiver", "enformer"), ("cabstractor", "enformer")])
    assert len(exp.tasks) == 6 * 3
    assert {t.options["head"] for t in exp.tasks} == {"meanlinear"}
    assert all(t.options["log1p"] for t in exp.tasks)
    assert "Isoform expression" in set(load_references()["dataset"])


def test_a_fit_made_with_other_defaults_is_run_again(tmp_path):
    """A run id names the options given; a finished run whose model was built with other
    defaults (an older biofuse) is not this configuration's result and runs again."""
    path = write_toml(tmp_path, seeds=(0,), extra="[[fit]]\nfusion = 'isoformer'\nepochs = 1\n"
                      "encoders = { rna = 'onehot_codon' }")
    exp = load_experiment(path)
    run_experiment(exp)
    plan = make_plan(load_experiment(path))
    assert not plan.todo

    def saved_as(fit, **options):
        config = json.loads((fit.run_dir / "config.json").read_text())
        config["model"]["fusion_options"].update(options)
        (fit.run_dir / "config.json").write_text(json.dumps(config))
        return [f.run_dir for f in make_plan(load_experiment(path)).todo]

    mil = next(f for f in plan.fits if f.task.options["fusion"] == "mil")
    # made under another default; an option unknown today is ignored
    assert saved_as(mil, attn_dim=100 + 1, added_since=1) == [mil.run_dir]
    assert run_experiment(load_experiment(path)).ran == 1
    assert not make_plan(load_experiment(path)).todo

    # widths and heads that follow the inputs are compared as built: the saved config records
    # them (2 heads of 33 dims on these one-hot inputs) ...
    iso = next(f for f in plan.fits if f.task.options["fusion"] == "isoformer")
    built = json.loads((iso.run_dir / "config.json").read_text())["model"]["fusion_options"]
    assert (built["dim"], built["heads"]) == (66, 2)
    # ... a config that left them to the rule of its day is resolved by today's: the same model
    assert saved_as(iso, dim=None, heads=None) == []
    # 0.9 saved IsoFormer's 8 heads (72 wide on these inputs): not today's default
    assert saved_as(iso, dim=None, heads=8) == [iso.run_dir]


@pytest.mark.parametrize("n_cores, n_fits, expected", [
    (2, 24, (2, 1)),    # one one-thread fit per core: 1.2x faster than one two-thread fit
    (16, 24, (8, 2)),   # at most 8 workers, the cores shared between them
    (2, 1, (1, 2)),     # a single fit runs in the process with every core
    (1, 24, (1, 1)),
])
def test_fits_run_one_per_core_by_default(monkeypatch, n_cores, n_fits, expected):
    from biofuse.pipeline.experiment import fits

    monkeypatch.setattr(fits, "cores", lambda: n_cores)
    assert fits.sizing(None, None, n_fits)[:2] == expected
    assert fits.sizing(1, None, n_fits)[:2] == (1, n_cores)  # --workers 1: in process
    assert fits.sizing(None, "tcp://scheduler:8786", n_fits)[1] is None  # its workers' business
