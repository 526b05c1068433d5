"""The cache under concurrent writers, SIGKILL at random moments, and damaged files."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from biofuse.cache import EmbeddingCache
from biofuse.cache.maintenance import gc_store, verify_store
from biofuse.cache.parts import Layout
from biofuse.cache.store import CacheDamageWarning
from biofuse.errors import CacheCorruption, CacheError
from tests.helpers.cache_data import FP, embedding, keys

REPO = Path(__file__).resolve().parents[1]


def spawn(root, start, stop, per_part):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.cache_writer", str(root), str(start), str(stop),
         str(per_part)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def expected(ks):
    return {k: embedding(k).astype(np.float16) for k in ks}


def assert_store_equals(store, want):
    assert sorted(store.keys()) == sorted(want)
    got = store.load(list(want))
    for i, k in enumerate(want):
        assert got[i].tobytes() == want[k].tobytes()


@pytest.mark.parametrize("n_writers", [2, 8])
def test_concurrent_writers_with_overlapping_keys(tmp_path, n_writers):
    root = tmp_path / "c"
    EmbeddingCache(root, create=True).store(FP)
    # writer w covers keys [30w, 30w + 60): every key is written by one or two writers
    procs = [spawn(root, 30 * w, 30 * w + 60, 7) for w in range(n_writers)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    store = EmbeddingCache(root).store(FP)
    ks = keys(30 * n_writers + 30)
    assert_store_equals(store, expected(ks))  # nothing lost, nothing mixed up
    stored = sum(len(p.keys) for p in store.parts)
    assert len(store) == len(ks) <= stored  # duplicates are stored but read once
    assert verify_store(store).ok


@pytest.mark.slow  # processes and clusters: seconds each; CI runs them
def test_sigkill_at_random_moments_then_resume(tmp_path):
    rnd = random.Random(1234)
    ks = keys(240)
    want = expected(ks)
    interrupted = 0
    for round_ in range(20):
        root = tmp_path / f"c{round_}"
        proc = spawn(root, 0, 240, 5)
        assert proc.stdout.readline().strip() == "ready"
        for _ in range(rnd.randint(0, 44)):  # of 48 parts: most kills land mid-run
            proc.stdout.readline()
        time.sleep(rnd.uniform(0.0, 0.01))  # anywhere inside the next part's write
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = EmbeddingCache(root).store(FP)  # opens after any kill
        report = verify_store(store)
        assert report.ok, report.damaged
        done = len(store)
        interrupted += 0 < done < 240
        with store.writer() as w:  # resume: compute only what is missing
            for k in store.missing(ks):
                w.add(k, embedding(k))
        assert_store_equals(store, want)
        gc_store(store, min_age_s=0)  # leftovers of the killed writer go
        assert not any((store.path / "tmp").iterdir())
        assert_store_equals(EmbeddingCache(root).store(FP), want)
    assert interrupted >= 5  # the kills really landed mid-write


# ------------------------------------------------------------------ damage

@pytest.fixture
def filled(tmp_path):
    store = EmbeddingCache(tmp_path / "c", create=True).store(FP)
    ks = keys(30)
    store.write(ks[:15], [embedding(k, dim=64, max_len=400) for k in ks[:15]])
    store.write(ks[15:], [embedding(k, dim=64, max_len=400) for k in ks[15:]])
    return store, ks


def _chunk_files(part_dir: Path) -> list[Path]:
    return sorted((part_dir / "embeddings" / "c").rglob("*"), key=str)


def _damaged_part(store) -> Path:
    return store.path / "parts" / store.parts[0].part_id


def test_truncated_chunk_is_reported(filled):
    store, ks = filled
    f = [p for p in _chunk_files(_damaged_part(store)) if p.is_file()][0]
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    report = verify_store(store)
    assert list(report.damaged) == [store.parts[0].part_id]
    with pytest.raises(CacheCorruption, match="cannot be read|missing or non-finite"):
        store.load(ks)  # a reader that indexed the part before the damage: caught on read
    fresh = EmbeddingCache(store.cache.root).store(FP)
    with pytest.warns(CacheDamageWarning, match="data file holds"):
        assert len(fresh.missing(ks)) == 15  # a new reader skips the part: only it is lost


def test_flipped_byte_is_caught_by_checksum(filled):
    store, ks = filled
    f = [p for p in _chunk_files(_damaged_part(store)) if p.is_file()][0]
    data = bytearray(f.read_bytes())
    data[100] ^= 0x01
    f.write_bytes(bytes(data))
    assert not verify_store(store).ok
    with pytest.raises(CacheCorruption):
        EmbeddingCache(store.cache.root).store(FP).load(ks)


def test_flipped_byte_inside_a_long_sequence_is_caught(tmp_path):
    """Chunks wholly inside a sequence are read straight into the output: still checked."""
    cache = EmbeddingCache(tmp_path / "c", create=True, layout=Layout(chunk_bytes=4096))
    store = cache.store(FP)
    k = keys(1)[0]
    store.write([k], [np.ones((2000, 16), dtype=np.float16)])
    shard = _chunk_files(_damaged_part(store))[-1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x10
    shard.write_bytes(bytes(data))
    with pytest.raises(CacheCorruption, match="crc32c"):
        EmbeddingCache(cache.root).store(FP).load([k])


def test_deleted_chunk_is_reported_not_zero_filled(filled):
    store, ks = filled
    for f in _chunk_files(_damaged_part(store)):
        if f.is_file():
            f.unlink()
    assert "holds 0 bytes" in next(iter(verify_store(store).damaged.values()))
    with pytest.raises(CacheCorruption, match="missing its data file"):
        store.load(ks)  # indexed before the damage: caught on read, never zero-filled
    with pytest.warns(CacheDamageWarning), pytest.raises(CacheError, match="15 of 30 sequences"):
        EmbeddingCache(store.cache.root).store(FP).load(ks)


def test_hand_edited_offsets_are_refused_on_first_use(filled):
    store, _ = filled
    part = zarr.open_group(str(_damaged_part(store)), mode="r+")
    off = part["offsets"][:]
    off[3] += 1  # still increasing: only the recorded digest can tell
    part["offsets"][:] = off
    assert "digest" in next(iter(verify_store(store).damaged.values()))
    reopened = EmbeddingCache(store.cache.root).store(FP)  # opening reads no part index
    with pytest.warns(CacheDamageWarning, match="damaged.*digest"):
        assert len(reopened) == 15  # the other part stays readable


def test_drop_corrupt_then_resume_restores_everything(filled):
    store, ks = filled
    f = [p for p in _chunk_files(_damaged_part(store)) if p.is_file()][0]
    f.write_bytes(b"")
    r = gc_store(store, drop_corrupt=True)
    assert r.damaged_removed == 1
    fresh = EmbeddingCache(store.cache.root).store(FP)
    todo = fresh.missing(ks)
    assert len(todo) == 15
    fresh.write(todo, [embedding(k, dim=64, max_len=400) for k in todo])
    assert verify_store(fresh).ok and fresh.missing(ks) == []


def test_corrupt_store_metadata_is_a_clear_error(filled):
    store, _ = filled
    (store.path / "parts" / store.parts[1].part_id / "zarr.json").write_text("{not json")
    with pytest.warns(CacheDamageWarning, match="gc --drop-corrupt"):
        assert len(EmbeddingCache(store.cache.root).store(FP).keys()) == 15
    json.loads((store.cache.root / "zarr.json").read_text())  # root untouched
    assert os.path.exists(store.path / "parts" / store.parts[0].part_id)
