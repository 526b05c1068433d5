"""`biofuse run`'s heartbeat: where each running fit is, read from its train_log.csv."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from biofuse.pipeline.experiment.progress import FitProgress, epoch_line

HEADER = "epoch,train_loss,val_score,val_selection,lr,seconds,tokens"


def log(path: Path, *rows: str, tags: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([(tags + "," if tags else "") + HEADER, *rows]) + "\n")
    return path


def fit(run_dir: Path):
    return SimpleNamespace(task=SimpleNamespace(dataset="cov_vac"), run_dir=run_dir)


def test_the_line_says_the_last_epoch_its_score_the_best_and_the_pace(tmp_path):
    path = log(tmp_path / "train_log.csv",
               "1,1.2,0.50,0.50,0.001,30.5,0", "2,0.9,0.70,0.60,0.001,31.0,0",
               "3,0.8,0.65,0.62,0.001,29.6,0")
    assert epoch_line(path, since=0) == "epoch 3: val 0.650, best 0.620, 30 s/epoch"


def test_mil_tags_name_the_candidate_and_best_is_its_own(tmp_path):
    path = log(tmp_path / "train_log.csv", "0.0,1,1.0,0.9,0.9,0.001,3,0",
               "0.1,1,1.0,0.4,0.4,0.001,3,0", "0.1,2,1.0,0.5,0.45,0.001,3,0",
               tags="entropy_weight")
    line = epoch_line(path, since=0)
    assert line == "epoch 2, entropy_weight 0.1: val 0.500, best 0.450, 3 s/epoch"


def test_queued_stale_half_written_and_nan_logs(tmp_path):
    assert epoch_line(tmp_path / "missing.csv", since=0) is None  # a queued fit
    old = log(tmp_path / "old" / "train_log.csv", "1,1.0,0.5,0.5,0.001,3,0")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert epoch_line(old, since=time.time() - 60) is None  # an earlier run's log
    half = log(tmp_path / "half" / "train_log.csv", "1,1.0,0.5,0.5,0.001,3,0", "2,0.9,0.")
    assert epoch_line(half, since=0).startswith("epoch 1:")
    nan = log(tmp_path / "nan" / "train_log.csv", "1,nan,nan,nan,0.001,3,0")
    assert epoch_line(nan, since=0) == "epoch 1: val undefined, best undefined, 3 s/epoch"
    assert epoch_line(log(tmp_path / "empty" / "train_log.csv"), since=0) is None


def test_heartbeat_lists_running_fits_and_skips_queued_ones(tmp_path):
    lines: list[str] = []
    bar = FitProgress(total=3, parallel=2, echo=lines.append)
    running = fit(tmp_path / "runs" / "xattn-textcnn-s0-abc")
    log(running.run_dir / "train_log.csv", "1,1.0,0.5,0.5,0.001,3,0")
    bar.heartbeat([running, fit(tmp_path / "runs" / "queued")])
    assert lines[0].startswith("fits 0 done, 2 running, 0 failed, 3 left;")
    assert lines[1:] == ["  cov_vac xattn-textcnn-s0-abc: epoch 1: val 0.500, best 0.500, "
                         "3 s/epoch"]


def test_watching_beats_while_a_fit_runs_in_process_and_stops_after(tmp_path):
    lines: list[str] = []
    bar = FitProgress(total=1, parallel=1, echo=lines.append)
    f = fit(tmp_path / "run")
    with bar.watching(f, every=0.01):
        log(f.run_dir / "train_log.csv", "1,1.0,0.5,0.5,0.001,3,0")
        deadline = time.time() + 10
        while not any("epoch 1" in line for line in lines) and time.time() < deadline:
            time.sleep(0.01)
        beating = [t for t in threading.enumerate() if t.name == "biofuse-heartbeat"]
        assert beating
    assert any(line.startswith("  cov_vac run: epoch 1:") for line in lines)
    assert not any(t.is_alive() for t in beating)  # the heartbeat ended with the fit


def test_eta_weighs_each_fit_left_by_the_fits_most_like_it(tmp_path):
    """A grid of two cheap fits and two dear ones (another seed of each finished): the ETA is
    what the two left should take, not finished fits per second."""
    def planned(name, fusion, config):
        return SimpleNamespace(task=SimpleNamespace(dataset="mrfp", options={"fusion": fusion}),
                               run_dir=tmp_path / name, config_id=config)

    cheap0, cheap1 = planned("c0", "concat", "c"), planned("c1", "concat", "c")
    dear0, dear1 = planned("i0", "isoformer", "i"), planned("i1", "isoformer", "i")
    other = planned("x0", "xattn", "x")  # nothing like it finished: its dataset's mean
    lines: list[str] = []
    bar = FitProgress(total=5, parallel=1, echo=lines.append,
                      fits=[cheap0, dear0, cheap1, dear1, other])
    bar.finished(cheap0, {"status": "complete", "seconds": 30.0, "metrics": {}})
    bar.finished(dear0, {"status": "complete", "seconds": 3000.0, "metrics": {}})
    assert bar.expected(cheap1) == 30.0 and bar.expected(dear1) == 3000.0
    assert bar.expected(other) == 1515.0
    assert bar.eta(3) == 30.0 + 3000.0 + 1515.0
    assert lines[-1].endswith("3 left, ETA 1h 15m")
    bar.parallel = 2
    assert bar.eta(3) == (30.0 + 3000.0 + 1515.0) / 2


def test_an_interrupted_fit_is_said_to_be_interrupted_not_done(tmp_path):
    lines = []
    bar = FitProgress(2, 1, lines.append)
    bar.finished(fit(tmp_path / "a"), {"status": "interrupted", "seconds": 12.0,
                                       "metrics": {"val": {"spearman": 0.5}, "test": {}}})
    assert "interrupted after 12 s" in lines[0] and "test undefined" not in lines[0]
    assert "fits 0 done, 1 running, 0 failed, 1 interrupted, 1 left" in lines[0]


def test_a_resumed_grid_has_an_eta_from_its_first_heartbeat_and_it_falls_as_fits_run(tmp_path):
    """The fits an earlier run finished (their metrics.json) estimate the ones left, and the
    running fits' work so far is taken off: no wait for a first fit of an hour to finish."""
    import json

    from biofuse.pipeline.experiment.progress import finished_seconds

    def planned(name, fusion, config, seconds=None):
        f = SimpleNamespace(task=SimpleNamespace(dataset="mrfp", options={"fusion": fusion}),
                            run_dir=tmp_path / name, config_id=config)
        f.run_dir.mkdir()
        if seconds is not None:
            (f.run_dir / "metrics.json").write_text(json.dumps({"seconds": seconds}))
        return f

    dear0, cheap0 = planned("i0", "isoformer", "i", 3000.0), planned("c0", "concat", "c", 30.0)
    damaged = planned("x0", "xattn", "x")
    (damaged.run_dir / "metrics.json").write_text("{")
    before = finished_seconds([dear0, cheap0, damaged, planned("q", "concat", "c")])
    assert before == {id(dear0): 3000.0, id(cheap0): 30.0}
    dear1, cheap1 = planned("i1", "isoformer", "i"), planned("c1", "concat", "c")
    lines: list[str] = []
    bar = FitProgress(total=2, parallel=1, echo=lines.append,
                      fits=[dear1, cheap1, dear0, cheap0], before=before)
    assert bar.eta(2) == pytest.approx(3030.0, abs=1)
    bar.start -= 1000  # dear1 has trained for 1,000 s
    assert bar.eta(2) == pytest.approx(2030.0, abs=1)
    bar.start -= 5000  # longer than expected: never below what the queued fit needs
    assert bar.eta(2) == pytest.approx(30.0, abs=1)
    bar.heartbeat([dear1])
    assert lines[-1].startswith("fits 0 done, 1 running, 0 failed, 2 left; 1h 40m so far, ETA ")
    bar.finished(dear1, {"status": "complete", "seconds": 6000.0, "metrics": {}})
    assert bar.expected(cheap1) == 30.0 and "1 left, ETA" in lines[-1]


def test_without_anything_finished_there_is_no_eta_yet():
    lines: list[str] = []
    bar = FitProgress(total=2, parallel=1, echo=lines.append, fits=[object(), object()])
    assert bar.eta(2) is None
    bar.heartbeat()
    assert "ETA" not in lines[-1]
