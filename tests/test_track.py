"""`biofuse run --track mlflow`: one MLflow run per fit, logged once, never at a fit's cost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import biofuse
from biofuse.cli import main
from biofuse.errors import ConfigError
from biofuse.examples import make_cds_example
from biofuse.pipeline.experiment.track import parse_track

mlflow = pytest.importorskip("mlflow")


def experiment(tmp_path: Path, seeds=(0, 1)) -> Path:
    make_cds_example(n=40, n_codons=8, seed=0).write_csv(tmp_path / "a.csv")
    path = tmp_path / "exp.toml"
    path.write_text("\n".join([
        'name = "tracked"', f"seeds = {list(seeds)}", 'cache = "cache"',
        "[datasets.a]", 'path = "a.csv"', 'label_cols = ["expression"]',
        "[encoders]", 'dna = "onehot"', 'rna = "onehot_codon"', 'protein = "onehot"',
        "[[fit]]", 'fusion = "mil"', "epochs = 3", "entropy_weights = [0.0, 0.1]",
        "mil = { dim = 8 }", "textcnn = { channels = 4 }"]) + "\n")
    return path


def runs(uri: str, name: str = "tracked"):
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    return client, (client.search_runs([exp.experiment_id]) if exp else [])


@pytest.mark.slow  # MLflow creates its SQLite schema per store: seconds each
def test_every_fit_is_one_mlflow_run_with_params_epoch_metrics_and_files(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = biofuse.run(experiment(tmp_path), out=tmp_path / "out", workers=1,
                         track=f"mlflow:{uri}")
    assert result.ok and result.ran == 2
    client, found = runs(uri)
    assert len(found) == 2
    by_seed = {r.data.tags["seed"]: r for r in found}
    assert set(by_seed) == {"0", "1"}
    run = by_seed["0"]
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["biofuse.dataset"] == "a" and tags["fusion"] == "mil" and tags["head"] == "textcnn"
    assert tags["biofuse.experiment"] == "tracked" and Path(tags["biofuse.run_dir"]).is_dir()
    params = run.data.params
    assert params["fit.fusion_options.dim"] == "8" and params["fit.head_options.channels"] == "4"
    assert params["fit.entropy_weights"] == "0.0,0.1"
    metrics = run.data.metrics
    saved = json.loads((Path(tags["biofuse.run_dir"]) / "metrics.json").read_text())
    assert metrics["val_spearman"] == pytest.approx(saved["val"]["spearman"])
    assert metrics["test_spearman"] == pytest.approx(saved["test"]["spearman"])
    # each entropy-weight candidate's curve under its own name, one point per epoch
    history = client.get_metric_history(run.info.run_id, "val_score/entropy_weight_0.1")
    assert [m.step for m in history] == [1, 2, 3]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "metrics.json", "train_log.csv"} <= artifacts
    # the same command again, and with a grown grid: each fit is logged once
    grown = experiment(tmp_path, seeds=(0, 1, 2))
    again = biofuse.run(grown, out=tmp_path / "out", workers=1, track=f"mlflow:{uri}")
    assert again.ran == 1
    assert len(runs(uri)[1]) == 3


@pytest.mark.slow  # MLflow creates its SQLite schema per store: seconds each
def test_a_finished_experiment_is_logged_by_tracking_it_afterwards(tmp_path):
    path = experiment(tmp_path, seeds=(0,))
    biofuse.run(path, out=tmp_path / "out", workers=1)
    uri = f"sqlite:///{tmp_path / 'later.db'}"
    result = biofuse.run(path, out=tmp_path / "out", workers=1, track=f"mlflow:{uri}")
    assert result.ran == 0
    assert len(runs(uri)[1]) == 1


@pytest.mark.slow  # MLflow creates its SQLite schema per store: seconds each
def test_a_tracker_that_fails_is_a_warning_and_no_fit_is_lost(tmp_path):
    lines: list[str] = []
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")  # the store's folder cannot be made
    result = biofuse.run(experiment(tmp_path, seeds=(0,)), out=tmp_path / "out", workers=1,
                         track=f"mlflow:sqlite:///{blocked / 'sub' / 'm.db'}", echo=lines.append)
    assert result.ok and result.ran == 1
    warnings = [line for line in lines if line.startswith("warning: could not log")]
    assert len(warnings) == 1 and "saved in" in warnings[0]


def test_bad_track_values_are_clear_errors_before_any_work(tmp_path):
    for bad in ("wandb", "", "mlflw:x"):
        with pytest.raises(ConfigError, match="--track"):
            parse_track(bad)
    res = CliRunner().invoke(main, ["run", str(experiment(tmp_path)), "--track", "tensorboard",
                                    "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "mlflow" in res.output and not (tmp_path / "out").exists()
    assert parse_track("mlflow").uri == "sqlite:///mlflow.db"
    assert parse_track("mlflow:http://host:5000").uri == "http://host:5000"


def test_mlflow_missing_is_an_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(ConfigError, match=r"biofuse-ml\[mlflow\]"):
        parse_track("mlflow")


def test_without_track_mlflow_is_never_imported(tmp_path):
    path = experiment(tmp_path, seeds=(0,))
    code = ("import sys, biofuse; biofuse.run(sys.argv[1], out=sys.argv[2], workers=1); "
            "print('mlflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "out")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow  # MLflow creates its SQLite schema per store: seconds each
def test_the_demo_grid_tracked_gives_one_mlflow_run_per_fit(tmp_path):
    uri = f"sqlite:///{tmp_path / 'demo.db'}"
    r = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "d"), "--epochs", "2",
                                  "--seeds", "1", "--workers", "1", "--track", f"mlflow:{uri}"])
    assert r.exit_code == 0, r.output
    found = runs(uri, "demo")[1]
    assert len(found) == 6  # dna, rna, protein alone; concat; mil without and with entropy
    assert {run.data.tags["fusion"] for run in found} == {"none", "concat", "mil"}
    assert all("val_spearman" in run.data.metrics and "fit.lr" in run.data.params
               for run in found)


@pytest.mark.slow  # MLflow creates its SQLite schema per store: seconds each
def test_a_search_logs_its_tuned_fits_not_its_trials(tmp_path):
    pytest.importorskip("optuna")
    path = experiment(tmp_path, seeds=(0, 1))
    text = path.read_text().replace("epochs = 3", "epochs = 3\nlr = { log_uniform = [1e-4, 1e-2] }"
                                    "\nsearch = { trials = 3, seed = 0 }")
    path.write_text(text)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = biofuse.run(path, out=tmp_path / "out", workers=1, track=f"mlflow:{uri}")
    assert result.ok
    _, found = runs(uri)
    assert len(found) == 2  # one tuned fit per seed; the 3 trials live in the study
    assert {r.data.tags["biofuse.tuned"] for r in found} == {"3 trials"}
    assert {r.data.tags["biofuse.searched"] for r in found} == {"lr"}
    assert all(Path(r.data.tags["biofuse.run_dir"]).parents[1].name == "runs" for r in found)
