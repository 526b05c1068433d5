"""A catalogue of hostile tables and option values through `extract`, `fit` and `predict`: each
must exit with code 2 and one paragraph that names the problem, never an "internal error" and
never a traceback. Garbage never trains with exit 0."""

from __future__ import annotations

import gzip
import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from biofuse.cli import main

GOOD = "AUGGCUAAAGAUUGGCACAUUCCGUUCUAA"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def good_rows(n=12, label=True):
    rng = np.random.default_rng(0)
    return [{"id": f"r{i}", "sequence": GOOD[:-3] + "GCU" * i + "UAA",
             **({"label": float(rng.normal())} if label else {})} for i in range(n)]


def extract_and_fit(table, tmp, out, *fit_args):
    """One-hot protein embeddings of ``table`` into ``tmp/c``, then a probing fit into ``out``;
    returns the fit's result."""
    assert run("extract", table, "--modality", "protein", "--model", "onehot", "--cache",
               tmp / "c").exit_code == 0
    return run("fit", table, "--fusion", "none", "--modalities", "protein", "--encoder",
               "protein=onehot", "--cache", tmp / "c", "--out", out, *fit_args)


def csv(path, text):
    path.write_text(text)
    return path


# name -> (make(tmp_path) -> (path, extra args), expected text in the message)
TABLES = {
    "missing file": (lambda t: (t / "nope.csv", []), "nope.csv"),
    "a directory": (lambda t: (t, []), "directory"),
    "empty file": (lambda t: (csv(t / "e.csv", ""), []), "empty"),
    "header only": (lambda t: (csv(t / "h.csv", "sequence,label\n"), []), "no data rows"),
    "not UTF-8": (lambda t: ((t / "b.csv").write_bytes(b"sequence,label\n\xff\xfe,1\n")
                             and t / "b.csv", []), "UTF-8"),
    "binary garbage": (lambda t: ((t / "g.csv").write_bytes(bytes(range(256)) * 4)
                                  and t / "g.csv", []), ""),
    "truncated gzip": (lambda t: ((t / "z.csv.gz").write_bytes(
        gzip.compress(b"sequence,label\n" + b"AUGUAA,1\n" * 100)[:40]) and t / "z.csv.gz", []),
        "gzip"),
    "ragged rows": (lambda t: (csv(t / "r.csv", "sequence,label\nAUGUAA,1,7,8\nAUGUAA\n"), []),
                    "as many fields"),
    "no sequence column": (lambda t: (csv(t / "n.csv", "foo,label\nAUGUAA,1\n"), []),
                           "sequence"),
    "named sequence column absent": (lambda t: (csv(t / "s.csv", f"seq,label\n{GOOD},1\n"),
                                                ["--sequence-col", "cds"]), "cds"),
    "named label column absent": (lambda t: (csv(t / "l.csv", f"seq,label\n{GOOD},1\n"),
                                             ["--label-col", "tpm"]), "tpm"),
    "named split column absent": (lambda t: (csv(t / "sp.csv", f"seq,label\n{GOOD},1\n"),
                                             ["--split-col", "fold"]), "fold"),
    "named group column absent": (lambda t: (csv(t / "gr.csv", f"seq,label\n{GOOD},1\n"),
                                             ["--group-col", "gene"]), "gene"),
    "invalid characters only": (lambda t: (csv(t / "i.csv", "sequence,label\nAUG#@!,1\nXYZ%,2\n"),
                                           []), "invalid character"),
    "all sequences empty": (lambda t: (csv(t / "es.csv", "sequence,label\n,1\n,2\n"), []),
                            "empty sequence"),
    "strict ORF drops every row": (lambda t: (csv(t / "o.csv", "sequence,label\nGCUGCU,1\n"),
                                              ["--orf", "strict"]), "strict"),
    "bad separator option": (lambda t: (csv(t / "sep.csv", f"sequence,label\n{GOOD},1\n"),
                                        ["--sep", "xx"]), "--sep"),
    "excel file": (lambda t: ((t / "x.xlsx").write_bytes(b"PK\x03\x04junk") and t / "x.xlsx",
                              []), ""),
    "empty FASTA": (lambda t: (csv(t / "f.fasta", ">only a header\n"), []), ""),
    "parquet binary sequences": (lambda t: (_parquet(t, {"sequence": pl.Series(
        [GOOD.encode()] * 4, dtype=pl.Binary), "label": [1.0, 2.0, 3.0, 4.0]}), []), "binary"),
    "parquet list labels": (lambda t: (_parquet(t, {"sequence": [GOOD] * 4,
                                                    "label": [[1.0], [2.0], [3.0], [4.0]]}), []),
                            "List"),
    "parquet struct sequences": (lambda t: (_parquet(t, {"sequence": [{"a": GOOD}] * 4,
                                                         "label": [1.0] * 4}), []), "Struct"),
}

FIT_ONLY_TABLES = {
    "labels not numbers, regression forced": (
        lambda t: (csv(t / "nn.csv", f"sequence,label\n{GOOD},high\n{GOOD}GCU,1\n"),
                   ["--task", "regression"]), "non-numeric"),
    "infinite label": (lambda t: (_table(t, ["1", "inf", "2", "3"]), []), "infinite"),
    "overflowing label": (lambda t: (_table(t, ["1", "1e400", "2", "3"]), []), "infinite"),
    "parquet inf labels": (lambda t: (_parquet(t, {"sequence": [GOOD + "GCU" * i for i in range(4)],
                                                    "label": [1.0, float("inf"), np.nan, 2.0]}),
                                      []), "infinite"),
    "all labels missing": (lambda t: (_table(t, ["", "NA", "nan", "?"]), []), "missing label"),
    "no label column": (lambda t: (csv(t / "nl.csv", f"sequence\n{GOOD}\n"), []), "label"),
    "classification with two label columns": (
        lambda t: (csv(t / "c2.csv", f"sequence,a,b\n{GOOD},x,y\n"),
                   ["--label-col", "a", "--label-col", "b", "--task", "classification"]),
        "one label column"),
    "one class only": (lambda t: (_table(t, ["1", "1", "1", "1"]), []), "one class"),
    "empty training split": (
        lambda t: (csv(t / "tr.csv", "sequence,label,split\n" + "".join(
            f"{GOOD[:-3]}{'GCU' * i}UAA,{i},test\n" for i in range(4))), []), "training split"),
}


def _table(tmp, labels):
    rows = "".join(f"{GOOD[:-3]}{'GCU' * i}UAA,{v}\n" for i, v in enumerate(labels))
    return csv(tmp / "lab.csv", "sequence,label\n" + rows)


def _parquet(tmp, columns):
    path = tmp / "t.parquet"
    pl.DataFrame(columns).write_parquet(path)
    return path


def _assert_user_error(res, expected):
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, res.output  # one paragraph
    assert "internal error" not in res.output and "Traceback" not in res.output
    assert expected.lower() in res.output.lower(), res.output


#: tables that are no mistake for `predict`: it reads a table with the run's own column options
#: (so a table's own flags do not apply), and reads no labels
NOT_FOR_PREDICT = {"named sequence column absent", "named label column absent",
                   "named split column absent", "named group column absent",
                   "strict ORF drops every row", "bad separator option", "parquet list labels"}


@pytest.mark.parametrize("command,name", [
    (command, name) for command in ("extract", "fit", "predict") for name in TABLES
    if not (command == "predict" and name in NOT_FOR_PREDICT)])
def test_bad_tables(tmp_path, name, command, trained_run):
    make, expected = TABLES[name]
    path, extra = make(tmp_path)
    if command == "extract":
        res = run("extract", path, "--modality", "protein", "--model", "onehot", "--cache",
                  tmp_path / "c", *extra)
    elif command == "fit":
        res = run("fit", path, "--fusion", "none", "--modalities", "protein", "--encoder",
                  "protein=onehot", "--cache", tmp_path / "c", "--out", tmp_path / "r", *extra)
    else:
        assert not extra
        run_dir, cache = trained_run
        res = run("predict", run_dir, path, "--cache", cache, "--out", tmp_path / "p.parquet")
    _assert_user_error(res, expected)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", list(FIT_ONLY_TABLES))
def test_bad_training_tables_never_train(tmp_path, name):
    make, expected = FIT_ONLY_TABLES[name]
    path, extra = make(tmp_path)
    res = run("fit", path, "--fusion", "none", "--modalities", "protein", "--encoder",
              "protein=onehot", "--cache", tmp_path / "c", "--out", tmp_path / "r", *extra)
    _assert_user_error(res, expected)
    assert not (tmp_path / "r" / "model.pt").exists()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    table = tmp / "good.csv"
    pl.DataFrame(good_rows()).write_csv(table)
    res = extract_and_fit(table, tmp, tmp / "run", "--epochs", "2")
    assert res.exit_code == 0, res.output
    return tmp / "run", tmp / "c"


def test_predict_refuses_what_it_cannot_write_or_read(tmp_path, trained_run):
    run_dir, cache = trained_run
    table = tmp_path / "new.csv"
    pl.DataFrame(good_rows(label=False)).write_csv(table)
    _assert_user_error(run("predict", run_dir, table, "--cache", cache, "--out",
                           tmp_path / "p.xlsx"), ".parquet or .csv")
    _assert_user_error(run("predict", tmp_path, table, "--cache", cache, "--out",
                           tmp_path / "p.csv"), "not a biofuse run directory")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{")
    (broken / "model.pt").write_bytes(b"")
    _assert_user_error(run("predict", broken, table, "--cache", cache, "--out",
                           tmp_path / "p.csv"), "damaged")


def test_predict_hint_is_a_command_that_works(tmp_path, trained_run):
    """Missing embeddings: the hint names a `biofuse extract` that extract accepts."""
    run_dir, cache = trained_run
    table = tmp_path / "other.csv"
    pl.DataFrame([{"sequence": "AUG" + "CAC" * i + "UAA"} for i in range(3, 9)]).write_csv(table)
    res = run("predict", run_dir, table, "--cache", cache, "--out", tmp_path / "p.csv")
    assert res.exit_code == 2
    hint = res.output.split("`")[1]
    assert hint.startswith("biofuse extract")
    import shlex

    assert run(*shlex.split(hint)[1:]).exit_code == 0
    res = run("predict", run_dir, table, "--cache", cache, "--out", tmp_path / "p.csv")
    assert res.exit_code == 0, res.output


def test_predict_finds_the_runs_own_cache_and_falls_back_when_it_moved(tmp_path, trained_run,
                                                                       monkeypatch):
    import shutil

    run_dir, cache = trained_run
    table = tmp_path / "new.csv"
    pl.DataFrame(good_rows(label=False)).write_csv(table)
    monkeypatch.setenv("BIOFUSE_CACHE", str(tmp_path / "elsewhere"))
    res = run("predict", run_dir, table, "--out", tmp_path / "p.csv")  # no --cache
    assert res.exit_code == 0, res.output
    moved = tmp_path / "moved_run"
    shutil.copytree(run_dir, moved)
    config = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps({**config, "cache": str(tmp_path / "gone")}))
    res = run("predict", moved, table, "--out", tmp_path / "p.csv")
    _assert_user_error(res, "no cache at")
    assert str(tmp_path / "elsewhere") in res.output  # $BIOFUSE_CACHE, not the vanished one
    res = run("predict", moved, table, "--cache", cache, "--out", tmp_path / "p.csv")
    assert res.exit_code == 0, res.output


def test_fit_hint_keeps_the_data_options(tmp_path):
    """With --orf longest-orf, the hinted extract embeds what fit then needs."""
    import shlex

    table = tmp_path / "t.csv"
    rows = [{"sequence": "GG" + "AUG" + "GCU" * (3 + i) + "UAA" + "CC", "label": float(i)}
            for i in range(20)]
    pl.DataFrame(rows).write_csv(table)
    fit = ["fit", table, "--fusion", "none", "--modalities", "protein", "--encoder",
           "protein=onehot", "--orf", "longest-orf", "--cache", tmp_path / "c",
           "--out", tmp_path / "r", "--epochs", "2"]
    assert run("extract", table, "--modality", "protein", "--model", "onehot", "--cache",
               tmp_path / "c").exit_code == 0  # without the ORF option: other sequences
    res = run(*fit)
    assert res.exit_code == 2 and "--orf longest-orf" in res.output, res.output
    hint = res.output.split("`")[1]
    assert run(*shlex.split(hint)[1:]).exit_code == 0
    res = run(*fit)
    assert res.exit_code == 0, res.output


def test_nan_metrics_are_reported_not_crashed(tmp_path):
    """Constant labels: no Spearman can be computed. fit reports null + reason, exit 0."""
    table = tmp_path / "const.csv"
    pl.DataFrame([{"sequence": GOOD[:-3] + "GCU" * i + "UAA", "label": 1.0}
                  for i in range(30)]).write_csv(table)
    res = extract_and_fit(table, tmp_path, tmp_path / "r", "--epochs", "3", "--task",
                          "regression")
    assert res.exit_code == 0, res.output
    assert "undefined" in res.output
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())  # strict JSON
    assert metrics["val"]["spearman"] is None
    assert metrics["val"]["undefined"]["reason"] == "the labels are constant"


@pytest.mark.parametrize("rows,splits", [(1, None), (6, ["train"] * 5 + ["val"]),
                                         (6, ["train"] * 6)])
def test_tiny_and_odd_splits_train_and_say_so(tmp_path, rows, splits):
    frame = pl.DataFrame([{"sequence": GOOD[:-3] + "GCU" * i + "UAA", "label": i + 0.5}
                          for i in range(rows)])
    if splits:
        frame = frame.with_columns(pl.Series("split", splits))
    table = tmp_path / "t.csv"
    frame.write_csv(table)
    res = extract_and_fit(table, tmp_path, tmp_path / "r", "--epochs", "2")
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    if metrics["val_is_train"]:
        assert "validation split is empty" in res.output


@pytest.mark.parametrize("err", ["ENOSPC", "EROFS"])
def test_a_full_or_read_only_disk_is_the_users_environment(tmp_path, monkeypatch, err):
    """Committing a part fails with ENOSPC / EROFS: exit 2 naming the path, cache consistent."""
    import errno
    import os

    from biofuse.cache import parts

    table = tmp_path / "t.csv"
    pl.DataFrame(good_rows()).write_csv(table)
    real_rename = os.rename

    def failing_rename(src, dst):
        if "parts" in str(dst):
            raise OSError(getattr(errno, err), os.strerror(getattr(errno, err)), str(dst))
        return real_rename(src, dst)

    monkeypatch.setattr(parts.os, "rename", failing_rename)
    res = run("extract", table, "--modality", "protein", "--model", "onehot", "--cache",
              tmp_path / "c")
    _assert_user_error(res, os.strerror(getattr(errno, err)))
    assert str(tmp_path / "c") in res.output
    monkeypatch.setattr(parts.os, "rename", real_rename)
    assert run("cache", "verify", tmp_path / "c").exit_code == 0
    res = run("extract", table, "--modality", "protein", "--model", "onehot", "--cache",
              tmp_path / "c")
    assert res.exit_code == 0 and "12 computed" in res.output, res.output


def test_pickled_weights_are_refused_without_suggesting_to_unpickle(tmp_path):
    import collections

    import torch

    from tests.helpers.tiny_models import save_tiny_esm2

    model_dir = save_tiny_esm2(tmp_path / "m")
    for f in model_dir.glob("*.safetensors"):
        f.unlink()
    torch.save({"weights": collections.OrderedDict(), "note": _Payload()},
               model_dir / "pytorch_model.bin")
    table = tmp_path / "p.csv"
    pl.DataFrame({"protein": ["MKV", "MKVLA"]}).write_csv(table)
    res = run("extract", table, "--modality", "protein", "--model", model_dir, "--cache",
              tmp_path / "c", "--dtype", "fp32")
    _assert_user_error(res, "pickled")
    assert "weights_only=False" not in res.output and "safetensors" in res.output


class _Payload:
    """Any non-tensor object makes a pickle that weights_only loading refuses."""


def test_constant_predictions_are_reported(tmp_path):
    """Synonymous variants of one protein (as in mRFP): a protein-only model can only predict a
    constant, so Spearman is undefined; fit says why and exits 0."""
    syn = {"GCU": "GCC", "AAA": "AAG", "GAU": "GAC", "CAC": "CAU"}
    base = ["GCU", "AAA", "GAU", "CAC"] * 3
    rng = np.random.default_rng(1)
    rows = []
    for _ in range(40):
        codons = [syn[c] if rng.random() < 0.5 else c for c in base]
        rows.append({"sequence": "AUG" + "".join(codons) + "UAA", "label": float(rng.normal())})
    table = tmp_path / "syn.csv"
    pl.DataFrame(rows).write_csv(table)
    res = extract_and_fit(table, tmp_path, tmp_path / "r", "--epochs", "3")
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["test"]["spearman"] is None
    assert metrics["test"]["undefined"]["reason"] == "the predictions are constant"


def test_a_run_that_fails_before_computing_leaves_no_empty_store(tmp_path):
    from tests.helpers.tiny_models import save_tiny_esm2

    model_dir = save_tiny_esm2(tmp_path / "model")
    (model_dir / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    table = tmp_path / "p.csv"
    pl.DataFrame({"protein": ["MKA", "MKKA"]}).write_csv(table)
    res = run("extract", table, "--modality", "protein", "--model", model_dir, "--cache",
              tmp_path / "c", "--dtype", "fp32")
    _assert_user_error(res, "cannot be read")  # weights load on first use, after planning
    assert not [p for p in (tmp_path / "c").iterdir() if p.is_dir()]
