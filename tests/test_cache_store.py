"""The embedding store: round trips, reads, pooling, writer checks, gc, export, opening errors."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st

from biofuse.cache import EmbeddingCache, Fingerprint, sequence_key
from biofuse.cache.maintenance import compact_store, export_store, gc_store, verify_store
from biofuse.errors import CacheError, FingerprintMismatch
from tests.helpers.cache_data import FP, embedding, keys


@pytest.fixture
def store(tmp_path):
    return EmbeddingCache(tmp_path / "cache", create=True).store(FP)


def test_sequence_key_is_content_hash():
    assert sequence_key("MKV") == sequence_key("MKV") != sequence_key("MKVL")
    assert len(sequence_key("")) == 32


@pytest.mark.parametrize("storage", ["float16", "float32"])
@pytest.mark.parametrize("dim", [8, 320, 1280])
def test_round_trip_random_ragged(tmp_path, storage, dim):
    fp = Fingerprint("m", storage_dtype={"float16": "fp16", "float32": "fp32"}[storage])
    store = EmbeddingCache(tmp_path / "c", create=True).store(fp)
    rng = np.random.default_rng(dim)
    lengths = [1, 5000, *rng.integers(1, 5000, size=6)]
    arrays = [rng.standard_normal((n, dim)).astype(np.float32) for n in lengths]
    ks = keys(len(arrays))
    store.write(ks[:4], arrays[:4])
    store.write(ks[4:], arrays[4:])
    reopened = EmbeddingCache(tmp_path / "c").store(fp, create=False)
    got = reopened.load(ks[::-1])
    for i, k in enumerate(ks[::-1]):
        want = arrays[ks.index(k)].astype(storage)
        assert got[i].dtype == np.dtype(storage)
        np.testing.assert_array_equal(got[i], want)
    assert got.data.flags["C_CONTIGUOUS"] and got.offsets[-1] == sum(lengths)


def test_missing_and_duplicates_resolve_to_oldest_part(store):
    ks = keys(10)
    store.write(ks[:6], [embedding(k) for k in ks[:6]])
    first = store.parts[0].part_id
    store.write(ks[4:], [np.full_like(embedding(k), 7.0) for k in ks[4:]])  # different bytes
    assert store.missing(ks + ["f" * 32]) == ["f" * 32]
    assert len(store) == 10
    got = store.load(ks[4:6])
    np.testing.assert_array_equal(got[0], embedding(ks[4]).astype(np.float16))  # oldest wins
    assert store._where[ks[4]][0] == [p.part_id for p in store.parts].index(first)


def test_load_missing_key_names_extract(store):
    store.write(keys(1), [embedding(keys(1)[0])])
    with pytest.raises(CacheError, match="biofuse extract"):
        store.load(keys(2))


def test_writer_refuses_overflow_nan_and_dim_change(store):
    with pytest.raises(CacheError, match="float32"), store.writer() as w:
        w.add("a" * 32, np.full((2, 16), 1e6, dtype=np.float32))  # > float16 max
    with pytest.raises(CacheError, match="NaN"), store.writer() as w:
        w.add("b" * 32, np.full((2, 16), np.nan, dtype=np.float32))
    store.write(["c" * 32], [np.ones((2, 16))])
    with pytest.raises(CacheError, match="dim 8"):
        store.write(["d" * 32], [np.ones((2, 8))])


def test_bad_values_are_named_and_the_good_sequences_kept(store):
    good = keys(4)
    with pytest.raises(CacheError, match=r"NaN or Inf.*other sequences were saved") as err, \
            store.writer() as w:
        for k in good[:2]:
            w.add(k, embedding(k))
        bad = np.ones((7, 16), dtype=np.float32)
        bad[5, 3] = 7e4  # beyond float16's range: Inf once stored
        w.add("f" * 32, bad)
        for k in good[2:]:
            w.add(k, embedding(k))
    assert "f" * 32 in str(err.value)
    assert store.missing(good) == [] and store.missing(["f" * 32]) == ["f" * 32]
    assert not any((store.path / "tmp").iterdir())  # the refused part left nothing behind
    assert verify_store(store).ok


@given(st.integers(0, 10**7), st.integers(1, 5000))
def test_chunk_choice_wastes_no_more_than_the_target_length(n_tokens, target):
    from biofuse.cache.shardio import balanced_chunk

    c = balanced_chunk(n_tokens, target)
    if n_tokens <= target:
        assert c == max(1, n_tokens)
    else:
        assert (3 * target) // 4 <= c <= (5 * target) // 4
        assert (-n_tokens) % c <= (-n_tokens) % target


def test_writer_commits_buffer_on_interrupt(store):
    ks = keys(3)
    with pytest.raises(KeyboardInterrupt), store.writer() as w:
        for k in ks:
            w.add(k, embedding(k))
        raise KeyboardInterrupt
    assert store.missing(ks) == []


def test_refresh_sees_other_writers(tmp_path):
    a = EmbeddingCache(tmp_path / "c", create=True).store(FP)
    b = EmbeddingCache(tmp_path / "c").store(FP)
    ks = keys(4)
    b.write(ks, [embedding(k) for k in ks])
    assert a.missing(ks) == []  # missing() looks again


def test_plain_zarr_reader_from_docs(store):
    """The ten-line reader in docs/cache-format.md, executed as written, on a real store."""
    import re

    doc = (Path(__file__).parents[1] / "docs" / "cache-format.md").read_text()
    snippet = re.search(r"```python\n(# plain-zarr reader.*?)```", doc, re.S).group(1)
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 12
    seqs = ["MKTAYIAK", "MSTQ"]
    store.write([sequence_key(s) for s in seqs], [embedding(s) for s in seqs])
    store.write([sequence_key(seqs[0])], [np.zeros((3, 16))])  # a later duplicate: ignored
    scope = {"cache_dir": str(store.cache.root), "fp_id": store.id, "sequence": "MKTAYIAK"}
    exec(snippet, scope)
    np.testing.assert_array_equal(scope["emb"], embedding("MKTAYIAK").astype(np.float16))


# ------------------------------------------------------------------ opening

def test_open_missing_empty_and_foreign_dirs(tmp_path):
    with pytest.raises(CacheError, match="no cache at"):
        EmbeddingCache(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CacheError, match="empty directory"):
        EmbeddingCache(tmp_path / "empty")
    EmbeddingCache(tmp_path / "empty", create=True)  # an empty dir may become a cache
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(CacheError, match="not a biofuse cache"):
        EmbeddingCache(tmp_path / "foreign")
    with pytest.raises(CacheError, match="will not write"):
        EmbeddingCache(tmp_path / "foreign", create=True)
    assert (tmp_path / "foreign" / "notes.txt").read_text() == "mine"  # nothing touched
    with pytest.raises(CacheError, match="URL"):
        EmbeddingCache("s3://bucket/cache")


def test_fingerprints_never_mix(tmp_path):
    cache = EmbeddingCache(tmp_path / "c", create=True)
    a = cache.store(Fingerprint("m", layer=-1))
    b = cache.store(Fingerprint("m", layer=5))
    a.write(keys(2), [embedding(k) for k in keys(2)])
    assert a.id != b.id and b.missing(keys(2)) == keys(2)
    with pytest.raises(CacheError, match="holds nothing"):
        cache.store(Fingerprint("m", layer=3), create=False)


def test_fingerprint_mismatch_is_reported(store):
    meta = store.path / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["biofuse"]["fingerprint"]["layer"] = 99
    meta.write_text(json.dumps(doc))
    with pytest.raises(FingerprintMismatch, match="different encoder fingerprint"):
        store.cache.store(FP)


def test_format_version_mismatch(store):
    meta = store.cache.root / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["biofuse_cache"]["format_version"] = 999
    meta.write_text(json.dumps(doc))
    with pytest.raises(CacheError, match="format version 999"):
        EmbeddingCache(store.cache.root)


# ------------------------------------------------------------------ gc, compaction, export

def test_gc_removes_only_old_temps(store):
    old, young = store.path / "tmp" / "old-part", store.path / "tmp" / "young-part"
    for d in (old, young):
        d.mkdir(parents=True)
        (d / "zarr.json").write_text("{}")
    past = time.time() - 7200
    os.utime(old, (past, past))
    r = gc_store(store)
    assert r.temps_removed == 1 and not old.exists() and young.exists()


def test_compaction_keeps_content_and_drops_duplicates(store):
    ks = keys(40)
    for i in range(0, 40, 8):
        store.write(ks[i:i + 12], [embedding(k) for k in ks[i:i + 12]])
    before = store.load(ks)
    assert len(store.parts) == 5
    compact_store(store, part_bytes=1 << 30)
    assert len(store.parts) == 1 and len(store.parts[0].keys) == 40
    after = store.load(ks)
    np.testing.assert_array_equal(before.data, after.data)
    assert verify_store(store).ok


def test_export_npz_and_parquet(store, tmp_path):
    import pyarrow.parquet as pq

    ks = keys(6)
    store.write(ks, [embedding(k) for k in ks])
    assert export_store(store, ks[:3], tmp_path / "e.npz", "npz") == 3
    npz = np.load(tmp_path / "e.npz")
    np.testing.assert_array_equal(npz[ks[1]], embedding(ks[1]).astype(np.float16))
    export_store(store, None, tmp_path / "e.parquet", "parquet")
    table = pq.read_table(tmp_path / "e.parquet").to_pylist()
    row = next(r for r in table if r["key"] == ks[2])
    np.testing.assert_allclose(np.array(row["embedding"]), embedding(ks[2]).astype(np.float16))
    assert row["n_tokens"] == len(embedding(ks[2]))


# ------------------------------------------------------------------ zarr compatibility of shards

@pytest.mark.parametrize("compressed", [True, False])
def test_zarr_reads_what_biofuse_writes_and_back(tmp_path, compressed):
    from biofuse.cache.parts import Layout
    from biofuse.cache.shardio import ShardReader

    cache = EmbeddingCache(tmp_path / "c", create=True, layout=Layout(chunk_bytes=4096,
                                                                      compressed=compressed))
    store = cache.store(FP)
    ks = keys(20)
    arrays = [embedding(k, dim=24, max_len=300) for k in ks]
    store.write(ks, arrays)
    part = store.parts[0]
    z = zarr.open_array(str(part.path / "embeddings"), mode="r")
    flat = np.concatenate(arrays).astype(np.float16)
    np.testing.assert_array_equal(z[:], flat)  # zarr-python decodes biofuse's shard
    group = zarr.open_group(str(part.path), mode="r")  # and the index biofuse writes by hand
    assert group["keys"][:].tolist() == ks
    np.testing.assert_array_equal(group["offsets"][:],
                                  np.cumsum([0] + [len(a) for a in arrays]))
    assert group.attrs["n_tokens"] == len(flat)
    # zarr-python writes the same array with the same metadata; biofuse decodes it
    other = zarr.create_array(str(tmp_path / "z"), shape=z.shape, dtype=z.dtype, chunks=z.chunks,
                              shards=z.shards, compressors=z.compressors, fill_value=np.nan,
                              config={"write_empty_chunks": True})
    other[:] = flat
    reader = ShardReader(tmp_path / "z" / "c" / "0" / "0", part.chunk, 24, "float16", compressed)
    n_chunks = -(-len(flat) // part.chunk)
    np.testing.assert_array_equal(reader.read(0, len(flat), n_chunks), flat)
    np.testing.assert_array_equal(reader.read(37, 1234, n_chunks), flat[37:1234])
    assert cache.layout.compressed is compressed
