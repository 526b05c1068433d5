"""Caches read from URLs through fsspec (here its in-memory filesystem, which stands in for
s3://, gs://, https://): the same data as the local copy, refusals for every write."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from biofuse.cache import EmbeddingCache
from biofuse.cache.maintenance import export_store, gc_store, store_info, verify_store
from biofuse.cli import main
from biofuse.errors import CacheCorruption, CacheError
from tests.helpers.cache_data import FP, embedding, keys


@pytest.fixture
def url_cache(tmp_path):
    """A cache written locally (two parts), then uploaded to memory://<unique bucket>/cache."""
    import fsspec

    local = tmp_path / "c"
    store = EmbeddingCache(local, create=True).store(FP)
    ks = keys(30)
    store.write(ks[:20], [embedding(k) for k in ks[:20]])
    store.write(ks[10:], [embedding(k) for k in ks[10:]])
    fs = fsspec.filesystem("memory")
    bucket = f"/bucket-{tmp_path.name}"
    fs.put(str(local), f"{bucket}/cache", recursive=True)
    yield f"memory://{bucket}/cache", ks, store
    fs.rm(bucket, recursive=True)


def test_url_cache_reads_what_the_local_copy_holds(url_cache):
    url, ks, local = url_cache
    remote = EmbeddingCache(url).store(FP, create=False)
    assert remote.missing(ks) == [] and len(remote.parts) == 2
    got, want = remote.load(ks[::-1]), local.load(ks[::-1])
    np.testing.assert_array_equal(got.data, want.data)
    np.testing.assert_array_equal(got.offsets, want.offsets)
    assert verify_store(remote).ok
    assert store_info(remote)["entries"] == 30


def test_url_cache_refuses_every_write(url_cache, tmp_path):
    url, ks, _ = url_cache
    with pytest.raises(CacheError, match="atomic"):
        EmbeddingCache(url, create=True)
    remote = EmbeddingCache(url).store(FP, create=False)
    with pytest.raises(CacheError, match="reads but does not write"):
        remote.writer()
    with pytest.raises(CacheError, match="reads but does not write"):
        gc_store(remote)
    out = tmp_path / "e.npz"
    assert export_store(remote, ks[:3], out, "npz") == 3  # reading out is fine
    assert sorted(np.load(out).files) == sorted(ks[:3])


def test_damage_behind_a_url_is_caught(url_cache):
    import fsspec

    url, ks, _ = url_cache
    fs = fsspec.filesystem("memory")
    shard = next(p for p in fs.find(url.removeprefix("memory://")) if p.endswith("c/0/0")
                 and "/embeddings/" in p)
    data = bytearray(fs.cat_file(shard))
    data[len(data) // 3] ^= 0x01
    fs.pipe_file(shard, bytes(data))
    with pytest.raises(CacheCorruption):
        EmbeddingCache(url).store(FP, create=False).load(ks)


def test_cli_reads_url_caches_and_file_urls_are_paths(url_cache, tmp_path):
    url, _, _ = url_cache
    runner = CliRunner()
    res = runner.invoke(main, ["cache", "info", url])
    assert res.exit_code == 0, res.output
    assert "30" in res.output
    res = runner.invoke(main, ["cache", "gc", url])
    assert res.exit_code == 2 and "does not write" in res.output
    # file:// is a filesystem path, and writable
    store = EmbeddingCache(f"file://{tmp_path / 'f'}", create=True).store(FP)
    store.write(keys(1), [embedding(keys(1)[0])])
    assert (tmp_path / "f" / "zarr.json").is_file()


def test_unknown_protocol_is_a_clear_error():
    with pytest.raises(CacheError, match="fsspec package"):
        EmbeddingCache("nosuchprotocol://bucket/cache")


def test_extract_refuses_a_url_cache_and_fit_reads_one(tmp_path):
    import fsspec

    from tests.test_fit import fit_args, planted

    table, ids = planted(tmp_path, n=40)
    res = CliRunner().invoke(main, ["extract", str(table), "--modality", "protein", "--model",
                                    "onehot", "--cache", f"memory://x-{tmp_path.name}/c"])
    assert res.exit_code == 2 and "atomic" in res.output and "Traceback" not in res.output
    url = f"memory://fit-{tmp_path.name}/cache"
    fsspec.filesystem("memory").put(str(tmp_path / "cache"), url.removeprefix("memory://"),
                                    recursive=True)
    args = fit_args(table, ids, tmp_path / "run", "--fusion", "concat", "--epochs", "2")
    args[args.index("--cache") + 1] = url
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "metrics.json").is_file()
