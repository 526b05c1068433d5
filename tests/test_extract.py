"""`biofuse extract`: what lands in the cache, long sequences, out-of-memory, resume, Dask."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from biofuse.cache import EmbeddingCache, sequence_key  # noqa: E402
from biofuse.cli import main  # noqa: E402
from biofuse.errors import BiofuseError  # noqa: E402
from biofuse.pipeline.encoders import EncoderRequest, build_encoder  # noqa: E402
from biofuse.pipeline.encoders.onehot import OneHotEncoder  # noqa: E402
from biofuse.pipeline.extract import extract  # noqa: E402
from biofuse.pipeline.extract.compute import Counts, OutOfMemory, embed_with_fallback  # noqa: E402
from tests.helpers.tiny_models import save_tiny_esm2  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)
AA = list("ACDEFGHIKLMNPQRSTVWY")


def proteins(n, lo=5, hi=60, seed=0):
    rng = np.random.default_rng(seed)
    return ["M" + "".join(rng.choice(AA, size=int(rng.integers(lo, hi)))) for _ in range(n)]


@pytest.fixture(scope="module")
def esm2_dir(tmp_path_factory):
    return save_tiny_esm2(tmp_path_factory.mktemp("esm2"), context=40)


def req(model, **kw):
    return EncoderRequest(model=str(model), modality="protein", **kw)


def stored(cache, request, seqs):
    enc = build_encoder(request)
    store = EmbeddingCache(cache).store(enc.fingerprint(), create=False)
    return store.load([sequence_key(s) for s in seqs])


def test_extract_stores_what_the_encoder_computes(esm2_dir, tmp_path):
    seqs = proteins(30, hi=38)
    s = extract(seqs + [None, seqs[0]], req(esm2_dir), tmp_path / "c", batch_tokens=200,
                progress=False)
    assert (s.unique, s.cached, s.counts.computed, s.rows_without_modality) == (30, 0, 30, 1)
    got = stored(tmp_path / "c", req(esm2_dir), seqs)
    enc = build_encoder(req(esm2_dir))
    for i, seq in enumerate(seqs):
        want = enc.forward([enc.tokenize(seq)])[0].astype(np.float16)
        np.testing.assert_allclose(got[i].astype(np.float32), want.astype(np.float32), atol=2e-3)
    again = extract(seqs, req(esm2_dir), tmp_path / "c", progress=False)
    assert (again.cached, again.counts.computed) == (30, 0)
    more = extract(seqs + proteins(5, seed=9), req(esm2_dir), tmp_path / "c", progress=False)
    assert (more.cached, more.counts.computed) == (30, 5)  # only what is missing


def test_long_sequences_window_truncate_drop(esm2_dir, tmp_path):
    short, long_ = proteins(1, 10, 11)[0], proteins(1, 100, 101, seed=3)[0]  # context is 40
    s = extract([short, long_], req(esm2_dir), tmp_path / "w", progress=False)
    assert s.counts.windowed == 1
    got = stored(tmp_path / "w", req(esm2_dir), [short, long_])
    assert got.lengths.tolist() == [len(short), len(long_)]  # one vector per token, full length
    t = extract([short, long_], req(esm2_dir, long_policy="truncate"), tmp_path / "t",
                progress=False)
    assert t.counts.truncated == 1
    assert stored(tmp_path / "t", req(esm2_dir, long_policy="truncate"),
                  [long_]).lengths.tolist() == [40]
    d = extract([short, long_], req(esm2_dir, long_policy="drop"), tmp_path / "d", progress=False)
    assert (d.counts.dropped_long, d.counts.computed) == (1, 1)
    # a sequence that fits is embedded identically whatever the policy
    a = stored(tmp_path / "w", req(esm2_dir), [short])[0]
    b = stored(tmp_path / "t", req(esm2_dir, long_policy="truncate"), [short])[0]
    np.testing.assert_array_equal(a, b)


class FlakyOneHot(OneHotEncoder):
    """Runs out of memory on batches of more than ``limit`` tokens."""

    limit = 30

    def forward(self, batch):
        if sum(len(b) for b in batch) > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(batch)


def test_out_of_memory_halves_the_batch_then_fails_clearly():
    enc = FlakyOneHot(req("onehot"))
    batch = [enc.tokenize(s) for s in proteins(8, 5, 9)]
    counts = Counts()
    out = embed_with_fallback(enc, batch, counts)
    assert [len(o) for o in out] == [len(b) for b in batch] and counts.oom_splits > 0
    with pytest.raises(OutOfMemory, match="does not fit"):
        embed_with_fallback(enc, [list(range(40))], Counts())


def test_other_errors_are_not_swallowed():
    class Broken(OneHotEncoder):
        def forward(self, batch):
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        embed_with_fallback(Broken(req("onehot")), [[1, 2]], Counts())


# ------------------------------------------------------------------ the command line

def write_table(path: Path, seqs: list[str]) -> Path:
    pl.DataFrame({"id": [f"p{i}" for i in range(len(seqs))], "protein": seqs,
                  "y": np.arange(len(seqs), dtype=float)}).write_csv(path)
    return path


def test_cli_extract_then_everything_cached(esm2_dir, tmp_path):
    data = write_table(tmp_path / "d.csv", proteins(20))
    args = ["extract", str(data), "--modality", "protein", "--model", str(esm2_dir),
            "--cache", str(tmp_path / "c"), "--dtype", "fp32"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "20 computed" in res.output
    res = CliRunner().invoke(main, [*args, "--json"])
    summary = json.loads(res.stdout)[0]
    assert summary["cached"] == 20 and summary["counts"]["computed"] == 0


def test_cli_extract_all_modalities_onehot(tmp_path):
    data = tmp_path / "m.csv"
    data.write_text("sequence,label\nAUGAAACCCUAA,1\nAUGGGGUAA,2\n")
    res = CliRunner().invoke(main, ["extract", str(data), "--modality", "all", "--model",
                                    "onehot", "--cache", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert [line.split(" / ")[0] for line in res.stdout.splitlines() if " / " in line] == [
        "dna", "rna", "protein"]


@pytest.mark.parametrize("args,message", [
    (["--model", "esm2_t6_8M", "--modality", "all"], "ambiguous"),
    (["--model", "onehot", "--modality", "protein", "--workers", "2", "--scheduler", "x"],
     "exclude each other"),
    (["--model", "nope", "--modality", "protein"], "neither a registered encoder"),
    (["--model", "esm2_t6_8M", "--modality", "dna"], "embeds protein, not dna"),
    (["--model", "onehot", "--modality", "protein", "--batch-tokens", "0"],
     "--batch-tokens 0 is out of range"),
])
def test_cli_extract_user_errors(tmp_path, args, message):
    data = write_table(tmp_path / "d.csv", proteins(3))
    res = CliRunner().invoke(main, ["extract", str(data), "--cache", str(tmp_path / "c"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output


@pytest.mark.slow  # processes and clusters: seconds each; CI runs them
def test_resume_after_sigkill_equals_uninterrupted_run(esm2_dir, tmp_path):
    seqs = proteins(400, 20, 38, seed=5)
    data = write_table(tmp_path / "d.csv", seqs)
    cmd = [sys.executable, "-m", "biofuse.cli", "extract", str(data), "--modality", "protein",
           "--model", str(esm2_dir), "--dtype", "fp32", "--batch-tokens", "120",
           "--commit-every", "0.05"]
    partial = 0
    for attempt in range(5):
        proc = subprocess.Popen([*cmd, "--cache", str(tmp_path / f"k{attempt}")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        deadline = time.time() + 60
        root = tmp_path / f"k{attempt}"
        while time.time() < deadline:  # kill once some, not all, parts are committed
            parts = list(root.glob("*/parts/*"))
            if len(parts) >= 2:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = EmbeddingCache(root).stores()[0]
        if 0 < len(store) < len(seqs):
            partial += 1
            break
    assert partial, "the kill never landed mid-run"
    before = len(store)
    res = subprocess.run([*cmd, "--cache", str(root), "--json"], capture_output=True, text=True,
                         cwd=REPO)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)[0]
    assert summary["cached"] == before and summary["counts"]["computed"] == len(seqs) - before
    extract(seqs, req(esm2_dir), tmp_path / "clean", batch_tokens=120, progress=False)
    resumed = stored(root, req(esm2_dir), seqs)
    clean = stored(tmp_path / "clean", req(esm2_dir), seqs)
    np.testing.assert_allclose(resumed.data.astype(np.float32), clean.data.astype(np.float32),
                               atol=2e-3)
    assert resumed.lengths.tolist() == clean.lengths.tolist()


@pytest.mark.slow  # processes and clusters: seconds each; CI runs them
def test_ctrl_c_saves_work_prints_summary_and_exits_130(esm2_dir, tmp_path):
    seqs = proteins(600, 20, 38, seed=7)
    data = write_table(tmp_path / "d.csv", seqs)
    cmd = [sys.executable, "-m", "biofuse.cli", "extract", str(data), "--modality", "protein",
           "--model", str(esm2_dir), "--dtype", "fp32", "--batch-tokens", "120",
           "--commit-every", "0.05", "--cache", str(tmp_path / "c")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((tmp_path / "c").glob("*/parts/*"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: finished embeddings are saved" in out
    assert "(0 tokens)" not in out  # the tokens of what was committed are counted
    assert "Traceback" not in err
    store = EmbeddingCache(tmp_path / "c").stores()[0]
    assert 0 < len(store) < len(seqs)
    res = subprocess.run([*cmd, "--json"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0 and json.loads(res.stdout)[0]["counts"]["computed"] == \
        len(seqs) - len(store)


def test_dataset_without_the_modality_is_a_clear_error(tmp_path):
    data = write_table(tmp_path / "p.csv", proteins(3))
    res = CliRunner().invoke(main, ["extract", str(data), "--modality", "rna", "--model",
                                    "onehot", "--cache", str(tmp_path / "c")])
    assert res.exit_code == 2 and "No row of the dataset has a rna sequence" in res.output


# ------------------------------------------------------------------ Dask

@pytest.mark.slow  # processes and clusters: seconds each; CI runs them
def test_two_local_dask_workers_equal_in_process(esm2_dir, tmp_path):
    pytest.importorskip("distributed")
    seqs = proteins(60, seed=11)
    extract(seqs, req(esm2_dir), tmp_path / "one", batch_tokens=150, progress=False)
    s = extract(seqs, req(esm2_dir), tmp_path / "two", batch_tokens=150, workers=2,
                progress=False)
    assert s.counts.computed == 60
    a = stored(tmp_path / "one", req(esm2_dir), seqs)
    b = stored(tmp_path / "two", req(esm2_dir), seqs)
    assert len(EmbeddingCache(tmp_path / "two").stores()[0].parts) > 1  # workers wrote parts
    np.testing.assert_allclose(a.data.astype(np.float32), b.data.astype(np.float32), atol=2e-3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # processes and clusters: seconds each; CI runs them
def test_existing_dask_cluster_on_localhost_equals_in_process(esm2_dir, tmp_path):
    pytest.importorskip("distributed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([str(bindir / "dask"), "scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--dashboard-address", ":0"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([str(bindir / "dask"), "worker", address,
                                           "--nthreads", "1", "--no-dashboard"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          env=env))
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        seqs = proteins(40, seed=12)
        extract(seqs, req(esm2_dir), tmp_path / "one", batch_tokens=150, progress=False)
        s = extract(seqs, req(esm2_dir), tmp_path / "sched", batch_tokens=150,
                    scheduler=address, progress=False)
        assert s.counts.computed == 40
        a = stored(tmp_path / "one", req(esm2_dir), seqs)
        b = stored(tmp_path / "sched", req(esm2_dir), seqs)
        np.testing.assert_allclose(a.data.astype(np.float32), b.data.astype(np.float32),
                                   atol=2e-3)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.slow
def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    pytest.importorskip("distributed")
    with pytest.raises(BiofuseError, match="No Dask scheduler answers"):
        extract(proteins(2), req("onehot"), tmp_path / "c", progress=False,
                scheduler=f"tcp://127.0.0.1:{_free_port()}")
