"""Searches in experiment files: distributions validated whole, Optuna studies that prune,
resume after a kill, never score test to choose, and give tuned rows of the results table."""

from __future__ import annotations

import json
import sys

import polars as pl
import pytest
from click.testing import CliRunner

import biofuse
from biofuse.cli import main
from biofuse.errors import ConfigError
from biofuse.examples import make_cds_example
from biofuse.pipeline.experiment import ExperimentError, load_experiment, make_plan

pytest.importorskip("optuna")

SEARCH = """seeds = [0, 1]
cache = "cache"
[datasets.a]
path = "a.csv"
label_cols = ["expression"]
[encoders]
dna = "onehot"
rna = "onehot_codon"
protein = "onehot"
[[fit]]
fusion = ["concat", "mil"]
epochs = 4
lr = { log_uniform = [1e-4, 1e-2] }
textcnn = { channels = { int = [4, 12] } }
mil = { dim = { int = [8, 24] } }
search = { trials = 4, seed = 0, startup_trials = 1, warmup_epochs = 1 }
"""


def experiment(tmp_path, text=SEARCH):
    make_cds_example(n=60, n_codons=8, seed=0).write_csv(tmp_path / "a.csv")
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def test_a_fit_table_with_distributions_is_one_search_per_grid_combination(tmp_path):
    exp = load_experiment(experiment(tmp_path))
    assert exp.tasks == []  # nothing of it is a grid fit
    assert [s.task.options["fusion"] for s in exp.searches] == ["concat", "mil"]
    concat, mil = exp.searches
    assert set(concat.task.space) == {"lr", "textcnn.channels"}  # mil.dim is mil's only
    assert set(mil.task.space) == {"lr", "textcnn.channels", "mil.dim"}
    assert mil.seeds == [0, 1] and mil.task.options["seed"] == 0
    assert mil.task.search.trials == 4
    plan = make_plan(exp)
    assert len({p.study_id for p in plan.searches}) == 2
    assert all(p.folder.parent == exp.out / "search" / "a" for p in plan.searches)
    assert "0 of 4 trials done" in "\n".join(plan.format())


def test_more_trials_continue_the_same_study(tmp_path):
    first = make_plan(load_experiment(experiment(tmp_path)))
    more = make_plan(load_experiment(experiment(tmp_path, SEARCH.replace("trials = 4",
                                                                         "trials = 9"))))
    other = make_plan(load_experiment(experiment(tmp_path, SEARCH.replace("1e-2", "1e-1"))))
    assert [p.study_id for p in first.searches] == [p.study_id for p in more.searches]
    assert first.searches[0].study_id != other.searches[0].study_id


@pytest.mark.parametrize("line, expected", [
    ("lr = { log_uniform = [0.0, 1e-2] }", "a log scale needs a positive low end"),
    ("lr = { uniform = [1e-2, 1e-3] }", "the low end must be below the high end"),
    ("lr = { uniform = [0.0, 1e-2] }", "the end 0 is out of the option's range"),
    ("lr = { uniform = [1e-3] }", "uniform takes two numbers, [low, high]"),
    ("lr = { lognormal = [1e-3, 1e-2] }", "is not a distribution"),
    ("lr = { log_unifrom = [1e-3, 1e-2] }", "is not a distribution"),
    ("batch_size = { uniform = [8, 64] }", "batch_size is a whole number; use { int = [...] }"),
    ("patience = { int = [2.5, 9] }", "int takes two whole numbers"),
    ("head = { int = [1, 2] }", "head is not a number option"),
    ("seed = { int = [0, 9] }", "seeds are not searched"),
    ("weight_decay = { uniform = [0.1, 15.0] }", "the end 15 is out of the option's"),
    ("lr = [0.001, { uniform = [1e-3, 1e-2] }]", "mixes a distribution into a list"),
])
def test_each_bad_search_space_is_one_clear_problem(tmp_path, line, expected):
    text = SEARCH.replace('lr = { log_uniform = [1e-4, 1e-2] }', line)
    with pytest.raises(ExperimentError) as info:
        load_experiment(experiment(tmp_path, text))
    assert any(expected in p for p in info.value.problems), info.value.problems


@pytest.mark.parametrize("search, expected", [
    ("{ trials = 0 }", "trials = 0 must be a whole number of at least 1"),
    ("{ trials = 5, sampler = \"cmaes\" }", "sampler = 'cmaes' is not one of tpe, random"),
    ("{ trails = 5 }", "unknown key 'trails' (did you mean 'trials'?)"),
    ("{ trials = 5, pruner = \"hyperband\" }", "pruner = 'hyperband' is not one of"),
    ("30", "must be a table"),
])
def test_bad_search_settings_are_named(tmp_path, search, expected):
    text = SEARCH.replace("search = { trials = 4, seed = 0, startup_trials = 1, "
                          "warmup_epochs = 1 }", f"search = {search}")
    with pytest.raises(ExperimentError) as info:
        load_experiment(experiment(tmp_path, text))
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_search_without_a_distribution_is_a_problem(tmp_path):
    text = SEARCH.replace("lr = { log_uniform = [1e-4, 1e-2] }", "lr = 0.001").replace(
        "textcnn = { channels = { int = [4, 12] } }", "").replace(
        "mil = { dim = { int = [8, 24] } }", "")
    with pytest.raises(ExperimentError) as info:
        load_experiment(experiment(tmp_path, text))
    assert any("no option is a distribution" in p for p in info.value.problems)
    result = CliRunner().invoke(main, ["run", str(tmp_path / "exp.toml")])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_a_search_runs_prunes_and_re_runs_its_best_for_every_seed(tmp_path):
    path = experiment(tmp_path)
    lines = []
    result = biofuse.run(path, workers=1, progress=False, echo=lines.append)
    assert result.ok
    runs = result.runs
    assert runs.height == 4 and set(runs["tuned"]) == {"4 trials"}  # 2 searches x 2 seeds
    assert set(runs["status"]) == {"complete"} and runs["test"].is_not_null().all()
    table = result.results
    assert table.height == 2 and set(table["complete"]) == {2}
    mil = table.filter(pl.col("fusion") == "mil").row(0, named=True)
    assert "mil.dim=" in mil["options"] and "lr=" in mil["options"]  # the searched options
    assert "mil (tuned, 4 trials)" in (tmp_path / "exp" / "results.md").read_text()
    for folder in sorted((tmp_path / "exp" / "search" / "a").iterdir()):
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["finished_trials"] == 4
        best = summary["best"]
        # the tuned seed-0 fit is the best trial's configuration: same validation score
        tuned = runs.filter((pl.col("fusion") == summary["method"]) & (pl.col("seed") == 0))
        assert tuned["val"][0] == pytest.approx(best["value"], abs=1e-6)
        for trial in summary["trials"]:  # the test split of a trial is never scored
            metrics = folder / trial["run_dir"] / "metrics.json"
            if trial["state"] == "COMPLETE":
                scored = json.loads(metrics.read_text())
                assert scored["test"] == {} and scored["test_scored"] is False
    assert any("trial" in line and "of 4 trials done" in line for line in lines)
    again = biofuse.run(path, workers=1, progress=False)
    assert again.ran == 0 and again.runs.height == 4  # finished: nothing runs twice
    res = CliRunner().invoke(main, ["report", str(tmp_path / "exp"), "--out",
                                    str(tmp_path / "report")])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "report" / "report.md").read_text()
    assert "## Searches" in page and "### a mil-textcnn" in page and "Best: trial" in page
    assert len(list((tmp_path / "report").glob("a-*-search.png"))) == 2


def test_pruning_stops_trials_that_trail_the_median(tmp_path):
    text = SEARCH.replace("trials = 4", "trials = 8").replace("epochs = 4", "epochs = 8") \
        .replace('fusion = ["concat", "mil"]', 'fusion = "concat"').replace(
        "mil = { dim = { int = [8, 24] } }", "").replace("[1e-4, 1e-2]", "[1e-6, 1e-1]")
    biofuse.run(experiment(tmp_path, text), workers=1, progress=False)
    summary = json.loads(next((tmp_path / "exp" / "search" / "a").glob("*/summary.json"))
                         .read_text())
    assert summary["pruned"] >= 1 and summary["complete"] >= 1
    pruned = [t for t in summary["trials"] if t["state"] == "PRUNED"]
    assert all(t["pruned_at_epoch"] < 8 for t in pruned)


def test_a_killed_search_resumes_its_study_and_retries_the_interrupted_trial(tmp_path,
                                                                             monkeypatch):
    from biofuse.pipeline.experiment import search

    text = SEARCH.replace('fusion = ["concat", "mil"]', 'fusion = "concat"').replace(
        "mil = { dim = { int = [8, 24] } }", "").replace("startup_trials = 1", "startup_trials = 4")
    path = experiment(tmp_path, text)  # every trial sampled at random: the seeded stream shows
    real, calls = search.run_fit_task, []

    def ctrl_c_in_the_third_trial(*args):
        calls.append(args)
        if len(calls) == 3:  # what a fit returns when Ctrl-C stops it
            return {"status": "interrupted", "seconds": 0.1, "metrics": {}}
        return real(*args)

    monkeypatch.setattr(search, "run_fit_task", ctrl_c_in_the_third_trial)
    with pytest.raises(KeyboardInterrupt):
        biofuse.run(path, workers=1, progress=False)
    monkeypatch.setattr(search, "run_fit_task", real)
    lines = []
    result = biofuse.run(path, workers=1, progress=False, echo=lines.append)
    assert result.ok and result.runs.height == 2
    assert any("trial 2 was interrupted; its values run again" in line for line in lines)
    summary = json.loads(next((tmp_path / "exp" / "search" / "a").glob("*/summary.json"))
                         .read_text())
    assert summary["finished_trials"] == 4  # the interrupted trial does not count
    interrupted_options = calls[2][1]
    assert 2 not in [t["number"] for t in summary["trials"]]  # the orphan is left out
    retried = next(t for t in summary["trials"] if t["number"] == 3)  # the next trial asked
    assert retried["params"]["lr"] == pytest.approx(interrupted_options["lr"])
    # the resumed sampler does not restart its seeded stream: no trial repeats trial 0 or 1
    lrs = [t["params"]["lr"] for t in summary["trials"]]
    assert len(set(lrs)) == len(lrs), lrs


def test_without_optuna_a_search_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    with pytest.raises(ConfigError, match="searches need Optuna"):
        biofuse.run(experiment(tmp_path), workers=1, progress=False)
    result = CliRunner().invoke(main, ["run", str(tmp_path / "exp.toml")])
    assert result.exit_code != 0 and "pip install 'biofuse-ml[search]'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_trials_run_and_report_on_a_two_worker_dask_cluster(tmp_path):
    text = SEARCH.replace('fusion = ["concat", "mil"]', 'fusion = "concat"').replace(
        "mil = { dim = { int = [8, 24] } }", "").replace("trials = 4", "trials = 6")
    lines = []
    result = biofuse.run(experiment(tmp_path, text), workers=2, progress=False,
                         echo=lines.append)
    assert result.ok and result.runs.height == 2 and set(result.runs["tuned"]) == {"6 trials"}
    assert any("2 at a time" in line for line in lines)
    summary = json.loads(next((tmp_path / "exp" / "search" / "a").glob("*/summary.json"))
                         .read_text())
    assert summary["finished_trials"] == 6 and summary["failed"] == 0
    assert len({t["run_dir"] for t in summary["trials"]}) == 6
