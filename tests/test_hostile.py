"""Reliability, round 2: the newer commands (`run`, `report`, `finetune`, `predict`,
`cache gc/export`, the Python API) given what a hostile user, a copied cache or a full disk
gives them. Nothing outside the folders a command was given is written or deleted; a fit is
finished only when all of it is on disk; files that never end cannot hang a command; every
wrong shape is one paragraph and a non-zero exit."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from biofuse.cli import main
from biofuse.examples import make_cds_example
from tests.helpers.cache_data import FP, embedding, keys


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def user_error(res, expected: str) -> None:
    assert res.exit_code == 2, res.output
    assert [line for line in res.output.splitlines() if line.startswith("error:")], res.output
    assert "internal error" not in res.output and "Traceback" not in res.output, res.output
    assert expected.lower() in res.output.lower(), res.output


def old(path: Path, hours: float = 3) -> Path:
    """Make ``path`` look ``hours`` old (gc removes only old temporaries)."""
    t = time.time() - hours * 3600
    os.utime(path, (t, t), follow_symlinks=False)
    return path


def outside(tmp_path: Path) -> Path:
    """A folder of someone else's, with subfolders older than an hour, that must survive."""
    victim = tmp_path / "victim"
    for name in ("precious", "more"):
        (victim / name).mkdir(parents=True)
        (victim / name / "data.txt").write_text("keep me")
        old(victim / name)
    return victim


def small_cache(root: Path):
    from biofuse.cache import EmbeddingCache

    store = EmbeddingCache(root, create=True).store(FP)
    ks = keys(4)
    store.write(ks, [embedding(k) for k in ks])
    return store


# ------------------------------------------------------------------------ containment

@pytest.mark.parametrize("scratch", ["tmp", "trash"])
def test_gc_never_follows_a_linked_scratch_folder_out_of_the_cache(tmp_path, scratch):
    store = small_cache(tmp_path / "c")
    victim = outside(tmp_path)
    link = store.path / scratch
    if link.exists():
        os.rmdir(link)
    link.symlink_to(victim, target_is_directory=True)
    res = run("cache", "gc", tmp_path / "c", "--drop-corrupt", "--compact")
    assert res.exit_code == 0, res.output
    assert "was a symbolic link" in res.output
    assert sorted(p.name for p in victim.iterdir()) == ["more", "precious"]
    assert (victim / "precious" / "data.txt").read_text() == "keep me"
    assert (store.path / scratch).is_dir() and not (store.path / scratch).is_symlink()
    assert run("cache", "verify", tmp_path / "c").exit_code == 0


def test_a_linked_tmp_folder_is_refused_by_writers(tmp_path):
    store = small_cache(tmp_path / "c")
    victim = outside(tmp_path)
    os.rmdir(store.path / "tmp")
    (store.path / "tmp").symlink_to(victim, target_is_directory=True)
    from biofuse.errors import CacheError

    with pytest.raises(CacheError, match="cache gc"):
        store.write(keys(2, offset=10), [embedding(k) for k in keys(2, offset=10)])
    assert sorted(p.name for p in victim.iterdir()) == ["more", "precious"]


def test_gc_leaves_a_store_that_is_a_link_to_another_cache_alone(tmp_path):
    other = small_cache(tmp_path / "other")
    temp = old(Path(other.path / "tmp" / "leftover"), 0) if False else other.path / "tmp" / "x"
    temp.mkdir()
    old(temp)
    (tmp_path / "c").mkdir()
    from biofuse.cache import EmbeddingCache

    EmbeddingCache(tmp_path / "c" / "sub", create=True)  # a cache whose store is a link
    (tmp_path / "c" / "sub" / other.id).symlink_to(other.path, target_is_directory=True)
    res = run("cache", "gc", tmp_path / "c" / "sub")
    assert res.exit_code == 0, res.output
    assert "left alone" in res.output
    assert temp.is_dir()


@pytest.mark.parametrize("fingerprint", ["../elsewhere/{id}", "{root}/../elsewhere/{id}", "..",
                                         "/etc", "."])
def test_a_fingerprint_id_cannot_lead_out_of_the_cache(tmp_path, fingerprint):
    small_cache(tmp_path / "c")
    elsewhere = small_cache(tmp_path / "elsewhere" / "x")
    (tmp_path / "elsewhere" / elsewhere.id).symlink_to(elsewhere.path)
    leftover = elsewhere.path / "tmp" / "leftover"
    leftover.mkdir()
    old(leftover)
    given = fingerprint.format(id=elsewhere.id, root=tmp_path / "c")
    for command in (["gc", "--compact"], ["info"], ["verify"]):
        res = run("cache", command[0], tmp_path / "c", "--fingerprint", given, *command[1:])
        user_error(res, "has no store")
    assert leftover.is_dir()


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/abs", "..", "a/b", ".hidden", "a b"])
def test_a_dataset_name_cannot_become_a_path_out_of_the_experiment(tmp_path, name):
    make_cds_example(n=40, n_codons=8).write_csv(tmp_path / "t.csv")
    (tmp_path / "exp.toml").write_text(
        f'[datasets.{json.dumps(name)}]\npath = "t.csv"\nlabel_cols = ["expression"]\n'
        '[encoders]\nprotein = "onehot"\n[[fit]]\nfusion = "none"\nepochs = 1\n')
    before = set(tmp_path.parent.iterdir())
    res = run("run", tmp_path / "exp.toml", "--out", tmp_path / "out", "--cache",
              tmp_path / "cache")
    user_error(res, "cannot name a folder")
    assert set(tmp_path.parent.iterdir()) == before
    assert not (tmp_path / "out").exists()


def test_report_figures_stay_inside_out_whatever_the_runs_table_says(tmp_path):
    import biofuse

    make_cds_example(n=40, n_codons=8).write_csv(tmp_path / "t.csv")
    (tmp_path / "exp.toml").write_text(
        '[datasets.d]\npath = "t.csv"\nlabel_cols = ["expression"]\n'
        '[encoders]\nrna = "onehot"\nprotein = "onehot"\n[[fit]]\nfusion = "concat"\n'
        'modalities = ["rna", "protein"]\nepochs = 2\n')
    result = biofuse.run(tmp_path / "exp.toml", out=tmp_path / "exp", cache=tmp_path / "c",
                         workers=1, progress=False)
    assert result.ok
    runs = pl.read_parquet(tmp_path / "exp" / "runs.parquet")
    runs.with_columns(dataset=pl.lit("../../../../escaped")).write_parquet(
        tmp_path / "exp" / "runs.parquet")
    report = tmp_path / "deep" / "report"
    res = run("report", tmp_path / "exp", "--out", report)
    assert res.exit_code == 0, res.output
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*.png")}
    assert written and all(str(p).startswith("deep/report/") for p in written), written
    assert not list(tmp_path.parent.glob("escaped*"))


# ------------------------------------------------------------------------ finished means on disk

def grid(tmp_path: Path, seeds=(0,)) -> Path:
    make_cds_example(n=40, n_codons=8).write_csv(tmp_path / "t.csv")
    (tmp_path / "exp.toml").write_text(
        f"seeds = {list(seeds)}\n"
        '[datasets.d]\npath = "t.csv"\nlabel_cols = ["expression"]\n'
        '[encoders]\nprotein = "onehot"\n[[fit]]\nfusion = "none"\nepochs = 2\n')
    return tmp_path / "exp.toml"


def test_a_run_whose_files_are_damaged_is_not_finished_and_runs_again(tmp_path):
    import biofuse

    toml = grid(tmp_path)
    first = biofuse.run(toml, out=tmp_path / "out", cache=tmp_path / "c", workers=1,
                        progress=False)
    assert first.ok and first.ran == 1
    run_dir = first.plan.fits[0].run_dir
    for damage in ("model.pt", "predictions.parquet"):
        (run_dir / damage).write_bytes(b"half a file")
        again = biofuse.run(toml, out=tmp_path / "out", cache=tmp_path / "c", workers=1,
                            progress=False)
        assert again.ran == 1 and again.ok, damage  # trained again, not "already finished"
        assert biofuse.predict(run_dir, tmp_path / "t.csv", cache=tmp_path / "c").height == 40
    (run_dir / "model.pt").unlink()
    assert biofuse.run(toml, out=tmp_path / "out", cache=tmp_path / "c", workers=1,
                       progress=False).ran == 1


def test_a_fit_killed_while_writing_its_results_is_not_finished(tmp_path, monkeypatch):
    import biofuse
    from biofuse.pipeline.train import rundir

    toml = grid(tmp_path)
    real = rundir.write_atomic

    def killed(path, write):
        if Path(path).name == "predictions.parquet":
            raise SystemExit("killed")  # as abrupt as a signal, after model.pt was written
        return real(path, write)

    monkeypatch.setattr(rundir, "write_atomic", killed)
    res = biofuse.run(toml, out=tmp_path / "out", cache=tmp_path / "c", workers=1, progress=False)
    run_dir = res.plan.fits[0].run_dir
    assert json.loads((run_dir / "config.json").read_text())["status"] == "running"
    monkeypatch.setattr(rundir, "write_atomic", real)
    plan = biofuse.plan(toml, out=tmp_path / "out", cache=tmp_path / "c")
    assert [f.finished for f in plan.fits] == [False]
    assert biofuse.run(toml, out=tmp_path / "out", cache=tmp_path / "c", workers=1,
                       progress=False).ok


def full_disk_at(monkeypatch, name: str):
    """Writing a file called ``name`` fails as a full disk does."""
    import builtins
    import errno

    real = builtins.open

    def opener(file, mode="r", *args, **kwargs):
        if "w" in mode and Path(str(file)).name.startswith(f".{name}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", opener)


@pytest.mark.parametrize("name", ["model.pt", "predictions.parquet", "metrics.json"])
def test_a_full_disk_while_fit_writes_is_exit_2_naming_the_path(tmp_path, monkeypatch, name):
    make_cds_example(n=40, n_codons=8).write_csv(tmp_path / "t.csv")
    assert run("extract", tmp_path / "t.csv", "--modality", "protein", "--model", "onehot",
               "--cache", tmp_path / "c", "--label-col", "expression").exit_code == 0
    full_disk_at(monkeypatch, name)
    res = run("fit", tmp_path / "t.csv", "--fusion", "none", "--encoder", "protein=onehot",
              "--cache", tmp_path / "c", "--out", tmp_path / "r", "--epochs", "2",
              "--label-col", "expression")
    user_error(res, "No space left on device")
    assert str(tmp_path / "r" / name) in res.output
    assert json.loads((tmp_path / "r" / "config.json").read_text())["status"] == "running"
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_stops_the_grid_with_exit_2_and_the_next_run_finishes_it(tmp_path,
                                                                             monkeypatch):
    toml = grid(tmp_path, seeds=(0, 1, 2))
    full_disk_at(monkeypatch, "model.pt")
    res = run("run", toml, "--out", tmp_path / "out", "--cache", tmp_path / "c", "--workers", "1")
    user_error(res, "No space left on device")
    assert "model.pt" in res.output
    assert res.output.count("FAILED") == 1  # stopped at the first: the others would fail too
    monkeypatch.undo()
    res = run("run", toml, "--out", tmp_path / "out", "--cache", tmp_path / "c", "--workers", "1")
    assert res.exit_code == 0, res.output
    assert pl.read_parquet(tmp_path / "out" / "runs.parquet")["status"].to_list() == \
        ["complete"] * 3


# ------------------------------------------------------------------------ bounded inputs

@pytest.fixture
def deadline():
    """Fail, rather than hang, if a command blocks on a file that never ends."""
    import signal

    def timeout(*_):
        raise TimeoutError("the command blocked on its input")

    old_handler = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old_handler)


@pytest.fixture
def trained(tmp_path_factory):
    """A finished probing run on one-hot protein embeddings: (table, cache, run directory)."""
    root = tmp_path_factory.mktemp("trained")
    make_cds_example(n=40, n_codons=8).write_csv(root / "t.csv")
    assert run("extract", root / "t.csv", "--modality", "protein", "--model", "onehot",
               "--cache", root / "c", "--label-col", "expression").exit_code == 0
    res = run("fit", root / "t.csv", "--fusion", "none", "--encoder", "protein=onehot",
              "--cache", root / "c", "--out", root / "r", "--epochs", "2",
              "--label-col", "expression")
    assert res.exit_code == 0, res.output
    return root / "t.csv", root / "c", root / "r"


def never_ending(tmp_path: Path, kind: str) -> Path:
    if kind == "fifo":
        path = tmp_path / "pipe.csv"
        os.mkfifo(path)
        return path
    path = tmp_path / "zero.csv"
    path.symlink_to("/dev/zero")
    return path


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_file_that_never_ends_is_refused_not_read(tmp_path, deadline, trained, kind):
    table, cache, run_dir = trained
    bad = never_ending(tmp_path, kind)
    expected = "named pipe" if kind == "fifo" else "device"
    for args in (["data", "inspect", bad],
                 ["extract", bad, "--modality", "protein", "--model", "onehot", "--cache", cache],
                 ["fit", bad, "--fusion", "none", "--cache", cache, "--out", tmp_path / "r"],
                 ["predict", run_dir, bad, "--cache", cache, "--out", tmp_path / "p.csv"],
                 ["run", bad],
                 ["report", run_dir, "--out", tmp_path / "rep", "--reference", bad],
                 ["cache", "export", cache, "--keys", bad, "--out", tmp_path / "e.npz"]):
        user_error(run(*args), expected)
    assert not (tmp_path / "r").exists() and not (tmp_path / "p.csv").exists()


def test_too_many_workers_are_refused_before_any_work(tmp_path):
    table = tmp_path / "t.csv"
    make_cds_example(n=20, n_codons=8).write_csv(table)
    toml = grid(tmp_path)
    for args in (["extract", table, "--modality", "protein", "--model", "onehot", "--cache",
                  tmp_path / "c", "--workers", "1024"],
                 ["run", toml, "--out", tmp_path / "out", "--workers", "1024"],
                 ["demo", "--out", tmp_path / "demo", "--workers", "1024"]):
        user_error(run(*args), "more local workers than this machine has")
    assert not (tmp_path / "c").exists() and not (tmp_path / "out").exists()
    assert not (tmp_path / "demo").exists()


def test_a_grid_of_a_million_fits_is_refused_at_once(tmp_path, deadline):
    make_cds_example(n=20, n_codons=8).write_csv(tmp_path / "t.csv")
    axes = "\n".join(f"{k} = {list(range(1, 11))}" for k in
                     ("epochs", "patience", "lr_patience", "batch_size", "val_window"))
    (tmp_path / "exp.toml").write_text(
        'seeds = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n[datasets.d]\npath = "t.csv"\n'
        'label_cols = ["expression"]\n[encoders]\nprotein = "onehot"\n'
        f'[[fit]]\nfusion = "none"\n{axes}\n')
    start = time.perf_counter()
    res = run("run", tmp_path / "exp.toml", "--dry-run")
    user_error(res, "1,000,000 runs")
    assert time.perf_counter() - start < 10
