"""Reliability, round 2: every file biofuse reads back (experiment files, run records, training
logs, runs tables, checkpoints, model directories) and every Python API argument, given the
wrong shape: one paragraph naming the file and the field, a non-zero exit, nothing lost; a
report view that cannot be drawn becomes a sentence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

import biofuse
from biofuse.cli import main
from biofuse.errors import BiofuseError, ConfigError
from biofuse.examples import make_cds_example


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def user_error(res, expected: str) -> None:
    assert res.exit_code == 2, res.output
    assert "internal error" not in res.output and "Traceback" not in res.output, res.output
    assert expected.lower() in res.output.lower(), res.output


# ------------------------------------------------------------------------ experiment files

TOML = ('[datasets.d]\npath = "t.csv"\nlabel_cols = ["expression"]\n[encoders]\n'
        'protein = "onehot"\n[[fit]]\nfusion = "none"\nepochs = 1\n')
WRONG_TYPES = {
    "a table where a name goes": (TOML.replace('fusion = "none"', "fusion = { a = 1 }"),
                                  "is not a name"),
    "a table as the head": (TOML + "head = { x = 1 }\n", "is not a name"),
    "an integer where a list goes": (TOML + "modalities = 3\n", "--modalities 3 is not a list"),
    "split_seed as text": (TOML.replace('label_cols = ["expression"]',
                                        'label_cols = ["expression"]\nsplit_seed = "x"'),
                           "--split-seed 'x' is not a number"),
    "label_cols as a number": (TOML.replace('label_cols = ["expression"]', "label_cols = 5"),
                               "--label-col 5 is not a list"),
    "a path as a number": (TOML.replace('path = "t.csv"', "path = 5"), "path = 5 is not text"),
    "entropy weights as text": (TOML.replace('fusion = "none"', 'fusion = "mil"')
                                + 'entropy_weights = "x"\n', "not a list of numbers"),
    "kernels as text": (TOML + 'textcnn = { kernels = "x" }\n', "not a list of whole numbers"),
    "a table as the fit's name": (TOML.replace("[[fit]]", "[[fit]]\nname = { a = 1 }"),
                                  "name = {'a': 1} is not text"),
    "out as a number": ("out = 5\n" + TOML, "out = 5 is not text"),
    "cache as a table": ("cache = { a = 1 }\n" + TOML, "is not text"),
    "a group column as a list": (TOML.replace('label_cols = ["expression"]',
                                              'label_cols = ["expression"]\ngroup_col = ["a"]'),
                                 "is not text"),
    "a finetune modality as a number": (TOML + "[[finetune]]\nmodality = 3\n", "is not text"),
}


@pytest.mark.parametrize("case", list(WRONG_TYPES))
def test_wrong_value_types_in_an_experiment_file_are_problems_before_anything_runs(tmp_path,
                                                                                  case):
    text, expected = WRONG_TYPES[case]
    make_cds_example(n=20, n_codons=8).write_csv(tmp_path / "t.csv")
    (tmp_path / "e.toml").write_text(text)
    res = run("run", tmp_path / "e.toml", "--dry-run", "--cache", tmp_path / "c")
    user_error(res, expected)
    assert not (tmp_path / "c").exists() and not (tmp_path / "e").exists()


# ------------------------------------------------------------------------ the Python API

@pytest.fixture
def table(tmp_path):
    make_cds_example(n=30, n_codons=8).write_csv(tmp_path / "t.csv")
    return tmp_path / "t.csv"


API_CALLS = {
    "load_dataset(5)": lambda t, d: biofuse.load_dataset(5),
    "load_dataset(None)": lambda t, d: biofuse.load_dataset(None),
    "load_dataset(label_cols=5)": lambda t, d: biofuse.load_dataset(t, label_cols=5),
    "load_dataset(split_seed='x')": lambda t, d: biofuse.load_dataset(t, split_seed="x"),
    "load_dataset(Dataset, orf=...)": lambda t, d: biofuse.load_dataset(
        biofuse.load_dataset(t, label_cols=["expression"]), orf="strict"),
    "extract(cache=5)": lambda t, d: biofuse.extract(t, modality="protein", model="onehot",
                                                     cache=5),
    "extract(model=5)": lambda t, d: biofuse.extract(t, modality="protein", model=5, cache=d),
    "extract(workers=1.5)": lambda t, d: biofuse.extract(t, modality="protein", model="onehot",
                                                         workers=1.5, cache=d),
    "extract(data=[])": lambda t, d: biofuse.extract([], modality="protein", cache=d),
    "fit(out=None)": lambda t, d: biofuse.fit(t, out=None, fusion="none"),
    "fit(out=5)": lambda t, d: biofuse.fit(t, out=5, fusion="none"),
    "fit(encoders=[...])": lambda t, d: biofuse.fit(t, out=d / "r", fusion="none",
                                                    encoders=["onehot"]),
    "fit(fusion_options=[1])": lambda t, d: biofuse.fit(t, out=d / "r", fusion="mil",
                                                        fusion_options=[1]),
    "fit(epochs=None)": lambda t, d: biofuse.fit(t, out=d / "r", fusion="none", epochs=None),
    "fit(cache=5)": lambda t, d: biofuse.fit(t, out=d / "r", fusion="none", cache=5),
    "predict(5, table)": lambda t, d: biofuse.predict(5, t),
    "predict(run, 5)": lambda t, d: biofuse.predict(d, 5),
    "predict(out=5)": lambda t, d: biofuse.predict(d, t, out=5),
    "embeddings(encoder=5)": lambda t, d: biofuse.embeddings(t, modality="protein", encoder=5),
    "embeddings(dtype='half')": lambda t, d: biofuse.embeddings(t, modality="protein",
                                                                dtype="half"),
    "plan(5)": lambda t, d: biofuse.plan(5),
    "run(5)": lambda t, d: biofuse.run(5),
    "run(workers='x')": lambda t, d: biofuse.run(t, workers="x"),
    "run(scheduler='garbage')": lambda t, d: biofuse.run(t, scheduler="garbage"),
    "report(5)": lambda t, d: biofuse.report(5, out=d / "rep"),
    "report([])": lambda t, d: biofuse.report([], out=d / "rep"),
    "report(out=None)": lambda t, d: biofuse.report(d, out=None),
    "report(reference=5)": lambda t, d: biofuse.report(d, out=d / "rep", reference=5),
    "report(examples='x')": lambda t, d: biofuse.report(d, out=d / "rep", examples="x"),
    "finetune(out=5)": lambda t, d: biofuse.finetune(t, out=5),
    "finetune(method=5)": lambda t, d: biofuse.finetune(t, out=d / "f", method=5),
    "demo(seeds=0)": lambda t, d: biofuse.demo(out=d / "demo", seeds=0),
    "demo(epochs='x')": lambda t, d: biofuse.demo(out=d / "demo", epochs="x"),
}


@pytest.mark.parametrize("call", list(API_CALLS))
def test_wrong_argument_types_through_the_python_api_are_config_errors(table, tmp_path, call):
    with pytest.raises(BiofuseError) as caught:
        API_CALLS[call](table, tmp_path)
    assert isinstance(caught.value, ConfigError) or "No such file" not in str(caught.value)
    assert not (tmp_path / "demo").exists() and not (tmp_path / "5").exists()


# ------------------------------------------------------------------------ model directories

def damaged_model(tmp_path: Path, damage: str) -> Path:
    import torch

    from tests.helpers.tiny_models import save_tiny_esm2

    d = save_tiny_esm2(tmp_path / "model")
    config = json.loads((d / "config.json").read_text())
    if damage == "no vocab.txt":
        (d / "vocab.txt").unlink()
    elif damage == "an empty vocab.txt":
        (d / "vocab.txt").write_text("")
    elif damage == "config.json a list":
        (d / "config.json").write_text("[1, 2]")
    elif damage == "config.json not JSON":
        (d / "config.json").write_text("{oops")
    elif damage == "a hidden size as text":
        (d / "config.json").write_text(json.dumps({**config, "hidden_size": "big"}))
    elif damage == "a tiny max_position_embeddings":
        (d / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2}))
    elif damage == "weights holding a list":
        for f in d.glob("*.safetensors"):
            f.unlink()
        torch.save([1, 2], d / "pytorch_model.bin")
    return d


@pytest.mark.parametrize("damage", ["no vocab.txt", "an empty vocab.txt", "config.json a list",
                                    "config.json not JSON", "a hidden size as text",
                                    "a tiny max_position_embeddings", "weights holding a list"])
def test_a_damaged_model_directory_is_one_paragraph(tmp_path, damage):
    model = damaged_model(tmp_path, damage)
    (tmp_path / "p.csv").write_text("protein\nMKVLA\nMKVLAAAAW\n")
    res = run("extract", tmp_path / "p.csv", "--modality", "protein", "--model", model,
              "--cache", tmp_path / "c", "--dtype", "fp32")
    user_error(res, str(model))


# ------------------------------------------------------------------------ run records

@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished grid (single protein and MIL over three modalities, two seeds)."""
    root = tmp_path_factory.mktemp("finished")
    make_cds_example(n=40, n_codons=8).write_csv(root / "t.csv")
    (root / "exp.toml").write_text(
        'seeds = [0, 1]\n[datasets.d]\npath = "t.csv"\nlabel_cols = ["expression"]\n'
        'dna_col = "upstream"\n[encoders]\ndna = "onehot"\nrna = "onehot"\nprotein = "onehot"\n'
        '[[fit]]\nfusion = ["none", "mil"]\nepochs = 2\nmil = { dim = 8 }\n')
    assert biofuse.run(root / "exp.toml", out=root / "exp", cache=root / "c", workers=1,
                       progress=False).ok
    return root


def edit_config(run_dir: Path, change) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps(change(config)))


RECORD_DAMAGE = {
    "config.json not JSON": (lambda r: (r / "config.json").write_text("{oops"), "valid JSON"),
    "config.json a list": (lambda r: (r / "config.json").write_text("[1]"), "not an object"),
    "fit a string": (lambda r: edit_config(r, lambda c: {**c, "fit": "x"}), "fit = 'x'"),
    "model missing": (lambda r: edit_config(r, lambda c: {k: v for k, v in c.items()
                                                          if k != "model"}), "model"),
    "a dim as text": (lambda r: edit_config(r, lambda c: {**c, "model": {
        **c["model"], "dims": {"protein": "x"}}}), "model.dims.protein"),
    "targets edited": (lambda r: edit_config(r, lambda c: {**c, "targets": {
        "task": "regression", "names": 5}}), "targets.names"),
    "the data path a number": (lambda r: edit_config(r, lambda c: {**c, "data": {"path": 5}}),
                               "data"),
}


@pytest.mark.parametrize("damage", list(RECORD_DAMAGE))
def test_predict_on_a_hand_edited_run_record_names_the_file_and_field(finished, tmp_path,
                                                                      damage):
    change, expected = RECORD_DAMAGE[damage]
    run_dir = tmp_path / "run"
    source = sorted((finished / "exp" / "runs" / "d").glob("none-*"))[0]
    shutil.copytree(source, run_dir)
    change(run_dir)
    res = run("predict", run_dir, finished / "t.csv", "--cache", finished / "c", "--out",
              tmp_path / "p.csv")
    user_error(res, expected)
    assert str(run_dir / "config.json") in res.output
    assert not (tmp_path / "p.csv").exists()


FILE_DAMAGE = {
    "metrics.json not JSON": ("metrics.json", b"{oops"),
    "metrics.json NaN": ("metrics.json", b'{"task": "regression", "val": {"spearman": NaN}}'),
    "metrics.json a list": ("metrics.json", b"[1, 2]"),
    "config.json a list": ("config.json", b"[1]"),
    "train_log.csv garbage": ("train_log.csv", b"\x00\xff garbage,,,\n1,2\n"),
    "train_log.csv empty": ("train_log.csv", b""),
    "predictions.parquet garbage": ("predictions.parquet", b"garbage"),
    "attention.parquet garbage": ("attention.parquet", b"garbage"),
}


@pytest.mark.parametrize("damage", list(FILE_DAMAGE))
def test_report_of_damaged_run_directories_still_reports_the_rest(finished, tmp_path, damage):
    name, content = FILE_DAMAGE[damage]
    shutil.copytree(finished / "exp" / "runs", tmp_path / "runs")
    damaged = sorted((tmp_path / "runs" / "d").glob("mil-*"))[0]
    (damaged / name).write_bytes(content)
    res = run("report", tmp_path / "runs", "--out", tmp_path / "rep", "--cache", finished / "c")
    assert res.exit_code == 0, res.output
    page = (tmp_path / "rep" / "report.md").read_text()
    assert "## t" in page  # run directories name their dataset after its table
    if name in ("config.json", "metrics.json") and "NaN" not in damage:
        assert "(damaged)" in page


@pytest.mark.parametrize("damage", ["garbage", "wrong columns", "nulls", "wrong types"])
def test_a_damaged_runs_table_falls_back_to_the_run_directories(finished, tmp_path, damage):
    shutil.copytree(finished / "exp", tmp_path / "exp")
    path = tmp_path / "exp" / "runs.parquet"
    runs = pl.read_parquet(path)
    if damage == "garbage":
        path.write_bytes(b"junk")
    elif damage == "wrong columns":
        pl.DataFrame({"a": [1]}).write_parquet(path)
    elif damage == "nulls":
        runs.with_columns(pl.lit(None, dtype=pl.String).alias("dataset")).write_parquet(path)
    else:
        runs.with_columns(pl.lit("x").alias("seed"), pl.lit("y").alias("val")).write_parquet(path)
    res = run("report", tmp_path / "exp", "--out", tmp_path / "rep")
    assert res.exit_code == 0, res.output
    if damage != "wrong types":  # types are cast where they can be; the rest is null
        assert "warning:" in res.output and "run directories" in res.output
    assert "## d" in (tmp_path / "rep" / "report.md").read_text()


def test_a_runs_table_from_an_older_version_is_read_with_its_newer_columns_empty(finished,
                                                                                  tmp_path):
    """biofuse 0.7 wrote runs.parquet without the search columns (tuned, searched): the report
    reads it as it is, with no warning and nothing missing."""
    shutil.copytree(finished / "exp", tmp_path / "exp")
    path = tmp_path / "exp" / "runs.parquet"
    old = pl.read_parquet(path).drop("tuned", "searched")
    old.write_parquet(path)
    res = run("report", tmp_path / "exp", "--out", tmp_path / "rep")
    assert res.exit_code == 0, res.output
    assert "warning:" not in res.output
    assert "## d" in (tmp_path / "rep" / "report.md").read_text()


# ------------------------------------------------------------------------ the rest

@pytest.mark.parametrize("address", ["garbage", "tcp://", "tcp://localhost:notaport",
                                     "http://host:1"])
def test_a_scheduler_that_is_no_address_is_refused_before_any_work(tmp_path, address):
    make_cds_example(n=20, n_codons=8).write_csv(tmp_path / "t.csv")
    res = run("extract", tmp_path / "t.csv", "--modality", "protein", "--model", "onehot",
              "--cache", tmp_path / "c", "--scheduler", address)
    user_error(res, "not the address of a Dask scheduler")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("splits,expected", [
    (["train", "val"], "validation data leaks into training"),
    (["val", "test"], "test data leaks into validation"),
    (["train", "test"], "test data leaks into training")])
def test_the_leakage_warning_names_the_split_that_leaks(tmp_path, splits, expected):
    rows = [("AUGGCUAAAUAA", 1.0, splits[0]), ("AUGGCUAAAUAA", 2.0, splits[1])]
    rows += [(f"AUG{'GCU' * i}UAA", float(i), ("train", "val", "test")[i % 3])
             for i in range(2, 14)]  # every other input once
    pl.DataFrame(rows, schema=["sequence", "label", "split"], orient="row").write_csv(
        tmp_path / "t.csv")
    warnings = biofuse.load_dataset(tmp_path / "t.csv").report.warnings
    assert any(expected in w for w in warnings), warnings
