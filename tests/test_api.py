"""The Python API and the layers under the CLI: the docs' notebook session runs; every registered
method and option is reachable from the command line; option values are checked before any work;
fit shows progress, grows its log while training, and keeps the best model on Ctrl-C."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from biofuse.cli import main  # noqa: E402
from biofuse.fusion import FUSIONS  # noqa: E402
from biofuse.heads import HEADS  # noqa: E402
from biofuse.options import flag_name, option_fields  # noqa: E402
from tests.test_fit import fit_args, planted  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run(args):
    return CliRunner().invoke(main, args)


@pytest.mark.slow
def test_docs_api_notebook_session_runs(tmp_path, monkeypatch):
    text = (REPO / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "docs/api.md lost its example"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "docs/api.md", "exec"), {})
    assert (tmp_path / "runs" / "mil" / "metrics.json").is_file()


def _non_default(f):
    """A valid value different from the field's default, as a CLI argument list."""
    flag = flag_name(f, "")
    kind = type(f.default)
    if f.default is False:
        return [flag]
    if f.default is None or kind is int:
        return [flag, str((f.default or 4) + 4)]
    if kind is float:
        return [flag, "0.05"]
    if kind is tuple:
        return [flag, "2,3"]
    if f.metadata.get("choices"):
        return [flag, next(c for c in f.metadata["choices"] if c != f.default)]
    raise AssertionError(f"no test value for {f.name}")


METHOD_OPTIONS = [("fusion", name, f) for name, cls in sorted(FUSIONS.items())
                  for f in option_fields(cls.Options) if f.metadata["cli"]] + \
                 [("head", name, f) for name, cls in sorted(HEADS.items())
                  for f in option_fields(cls.Options) if f.metadata["cli"]]


#: the developer loop tries each method's first option; CI's slow pass tries every option
_FIRST = {(kind, name): f for kind, name, f in reversed(METHOD_OPTIONS)}


@pytest.mark.parametrize("kind,name,f", [
    pytest.param(kind, name, f, id=f"{name}-{f.name}",
                 marks=() if _FIRST[(kind, name)] is f else pytest.mark.slow)
    for kind, name, f in METHOD_OPTIONS])
def test_every_method_option_is_reachable_from_the_cli(tmp_path, kind, name, f):
    table, ids = planted(tmp_path, n=40)
    prefix = (FUSIONS if kind == "fusion" else HEADS)[name].Options.prefix
    arg = _non_default(f)
    arg[0] = flag_name(f, prefix)
    if name == "xattn" and f.name == "dim":
        arg[1] = "8"  # must stay divisible by the heads
    if name == "isoformer" and f.name == "dim":
        arg[1] = "16"
    if f.name == "heads":
        arg[1] = "2"
    other = ["--head", name] if kind == "head" else ["--fusion", name]
    base = ["--fusion", "concat"] if kind == "head" else []
    mods = ["--modalities", "protein"] if name == "none" else []
    task = ["--task", "classification"] if name == "logistic" else []  # a classifier's options
    res = run(fit_args(table, ids if name != "none" else {"protein": ids["protein"]},
                       tmp_path / "run", "--epochs", "1", *base, *other, *mods, *task, *arg))
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    recorded = config["model"][f"{kind}_options"][f.name]
    expected = True if f.default is False else (
        [2, 3] if isinstance(f.default, tuple) else arg[1] if isinstance(f.default, str)
        else (int if f.default is None else type(f.default))(arg[1]))
    assert recorded == expected


def test_every_registered_method_and_encoder_is_listed_by_the_cli():
    help_text = run(["fit", "--help"]).output
    for name in list(FUSIONS) + list(HEADS):
        assert name in help_text
    listing = json.loads(run(["encoders", "--json"]).output)
    from biofuse.pipeline.encoders import ENCODERS
    from biofuse.pipeline.extract import ExtractOptions

    assert {(r["name"], r["modality"]) for r in listing} == {(n, str(m)) for n, m in ENCODERS}
    for n, m in ENCODERS:
        assert ExtractOptions(model=n).request(m).model == n


def test_an_option_of_another_method_is_refused(tmp_path):
    table, ids = planted(tmp_path, n=20)
    res = run(fit_args(table, ids, tmp_path / "r", "--fusion", "concat", "--xattn-heads", "2"))
    assert res.exit_code == 2 and "--xattn-heads apply to --fusion xattn" in res.output
    import biofuse
    from biofuse.errors import ConfigError

    with pytest.raises(ConfigError, match="Unknown option.*token_level.*--concat-dna-dim"):
        biofuse.fit(table, fusion="concat", fusion_options={"token_level": True},
                    out=tmp_path / "r", cache=tmp_path / "cache")


BAD_FIT = [
    (["--lr", "nan"], "--lr nan is out of range"),
    (["--lr", "inf"], "--lr inf is out of range"),
    (["--lr", "0"], "--lr 0"),
    (["--epochs", "0"], "--epochs 0 is out of range"),
    (["--batch-size", "0"], "--batch-size 0"),
    (["--batch-tokens", "-5"], "--batch-tokens -5"),
    (["--weight-decay", "-1"], "--weight-decay -1"),
    (["--patience", "0"], "--patience 0"),
    (["--channels", "0"], "--channels 0"),
    (["--projection", "-3"], "--projection -3"),
    (["--textcnn-dropout", "1.5"], "--textcnn-dropout 1.5"),
    (["--textcnn-kernels", "3,x"], "comma-separated list of int"),
    (["--entropy-weights", "0,-1"], "must be non-negative"),
    (["--entropy-weights", "nan"], "must be non-negative"),
    (["--threads", "0"], "--threads 0"),
    (["--fusion", "xattn", "--xattn-heads", "3", "--xattn-dim", "256"], "does not divide"),
    (["--fusion", "mil", "--mil-dim", "0"], "--mil-dim 0"),
]


@pytest.mark.parametrize("args,message", BAD_FIT, ids=[" ".join(a) for a, _ in BAD_FIT])
def test_fit_option_values_are_checked_before_any_work(tmp_path, args, message):
    table = tmp_path / "d.csv"
    table.write_text("sequence,label\nAUGAAAUAA,1\n")
    full = args if "--fusion" in args else ["--fusion", "mil", *args]
    res = run(["fit", str(table), "--out", str(tmp_path / "r"), "--cache", str(tmp_path / "c"),
               *full])
    assert res.exit_code == 2, res.output
    assert message in res.output and "internal error" not in res.output
    assert not (tmp_path / "r").exists()  # nothing written


BAD_EXTRACT = [
    (["--workers", "-1"], "--workers -1 is out of range"),
    (["--workers", "0"], "--workers 0 is out of range"),
    (["--window-overlap", "-1"], "--window-overlap -1"),
    (["--commit-every", "0"], "--commit-every 0"),
    (["--device", "bogus"], "--device 'bogus'"),
    (["--device", "cuda:7"], "CUDA device"),
    (["--layer", "1.5"], "1.5"),
]


@pytest.mark.parametrize("args,message", BAD_EXTRACT, ids=[" ".join(a) for a, _ in BAD_EXTRACT])
def test_extract_option_values_are_checked_before_any_work(tmp_path, args, message):
    table = tmp_path / "d.csv"
    table.write_text("sequence,label\nAUGAAAUAA,1\n")
    res = run(["extract", str(table), "--modality", "protein", "--model", "onehot",
               "--cache", str(tmp_path / "c"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "internal error" not in res.output
    assert not (tmp_path / "c").exists()


def test_fit_prints_progress_and_ctrl_c_keeps_the_best_model(tmp_path, monkeypatch):
    from biofuse.pipeline.train import trainer

    table, ids = planted(tmp_path, n=60)
    seen_rows = []
    original = trainer.ProgressLine.on_epoch_end

    def interrupt_at_epoch_3(self, t, log):
        original(self, t, log)
        seen_rows.append(len((tmp_path / "run" / "train_log.csv").read_text().splitlines()) - 1)
        if log.epoch == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer.ProgressLine, "on_epoch_end", interrupt_at_epoch_3)
    res = run(fit_args(table, ids, tmp_path / "run", "--fusion", "concat"))
    assert res.exit_code == 130, res.output
    assert seen_rows == [1, 2, 3]  # the log grows while training runs
    assert "epoch 1/40: train loss" in res.output and "best" in res.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert config["status"] == "interrupted" and metrics["interrupted"]
    assert metrics["test"] == {}  # an interrupted run never touches the test split
    assert (tmp_path / "run" / "model.pt").is_file()


def test_a_finished_run_is_marked_complete(tmp_path):
    table, ids = planted(tmp_path, n=40)
    res = run(fit_args(table, ids, tmp_path / "run", "--fusion", "concat", "--epochs", "2"))
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["status"] == "complete"


def test_opening_a_store_reads_no_part_index(tmp_path, monkeypatch):
    from biofuse.cache import EmbeddingCache, store
    from tests.helpers.cache_data import FP, embedding, keys

    s = EmbeddingCache(tmp_path / "c", create=True).store(FP)
    ks = keys(6)
    s.write(ks[:3], [embedding(k) for k in ks[:3]])
    s.write(ks[3:], [embedding(k) for k in ks[3:]])
    calls = []
    real = store.read_part_index
    monkeypatch.setattr(store, "read_part_index", lambda p: calls.append(p) or real(p))
    reopened = EmbeddingCache(tmp_path / "c").store(FP)
    assert calls == []
    assert len(reopened) == 6 and len(calls) == 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=80), st.integers(1, 16),
       st.one_of(st.none(), st.integers(1, 2000)))
def test_length_batches_cover_every_row_once_within_the_budget(lengths, size, budget):
    from biofuse.pipeline.train.fit import length_batches

    lengths = np.array(lengths)
    rows = np.arange(len(lengths))
    batches = length_batches(rows, lengths, size, np.random.default_rng(0), budget)
    assert sorted(np.concatenate(batches).tolist()) == rows.tolist()
    for b in batches:
        assert 1 <= len(b) <= size
        if budget is not None and len(b) > 1:
            assert len(b) * lengths[b].max() <= budget
