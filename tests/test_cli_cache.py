"""`biofuse cache info|verify|gc|export` as a user runs them."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from biofuse.cache import EmbeddingCache
from biofuse.cli import main
from tests.helpers.cache_data import FP, embedding, keys


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def make(tmp_path, n=12):
    store = EmbeddingCache(tmp_path / "c", create=True).store(FP)
    ks = keys(n)
    store.write(ks[:8], [embedding(k) for k in ks[:8]])
    store.write(ks[4:], [embedding(k) for k in ks[4:]])
    return store, ks


def test_info(tmp_path):
    store, _ = make(tmp_path)
    res = run("cache", "info", store.cache.root)
    assert res.exit_code == 0, res.output
    assert "12 sequences" in res.output and "4 duplicate entries" in res.output
    info = json.loads(run("cache", "info", store.cache.root, "--json").output)
    assert info[0]["entries"] == 12 and info[0]["dim"] == 16 and info[0]["parts"] == 2


def test_info_says_the_long_sequence_policy_in_words():
    from biofuse.cli_cache import _long_policy

    assert _long_policy("window:1022:64") == "windows of 1,022 tokens overlapping by 64"
    assert _long_policy(f"window:{1 << 30}:64") == "whole (no context limit)"
    assert _long_policy("truncate") == "truncate" and _long_policy("window:x") == "window:x"


def test_verify_ok_and_damaged_exit_codes(tmp_path):
    store, _ = make(tmp_path)
    assert run("cache", "verify", store.cache.root).exit_code == 0
    part = sorted((store.path / "parts").iterdir())[0]
    next(p for p in (part / "embeddings" / "c").rglob("*") if p.is_file()).write_bytes(b"xx")
    res = run("cache", "verify", store.cache.root)
    assert res.exit_code == 3
    assert "DAMAGED (1 parts)" in res.output and "--drop-corrupt" in res.output
    res = run("cache", "gc", store.cache.root, "--drop-corrupt")
    assert res.exit_code == 0 and "1 damaged parts" in res.output
    assert run("cache", "verify", store.cache.root).exit_code == 0


def test_gc_compact(tmp_path):
    store, ks = make(tmp_path)
    res = run("cache", "gc", store.cache.root, "--compact")
    assert "parts 2 -> 1" in res.output
    assert EmbeddingCache(store.cache.root).store(FP).missing(ks) == []


def test_export(tmp_path):
    store, ks = make(tmp_path)
    (tmp_path / "keys.txt").write_text("\n".join(ks[:2]) + "\n")
    out = tmp_path / "e.npz"
    res = run("cache", "export", store.cache.root, "--keys", tmp_path / "keys.txt", "--out", out)
    assert res.exit_code == 0, res.output
    assert sorted(np.load(out).files) == sorted(ks[:2])


def test_export_needs_fingerprint_when_several(tmp_path):
    store, _ = make(tmp_path)
    from biofuse.cache import Fingerprint

    store.cache.store(Fingerprint("other")).write(keys(1), [embedding(keys(1)[0])])
    res = run("cache", "export", store.cache.root, "--out", tmp_path / "e.npz")
    assert res.exit_code == 2 and "--fingerprint" in res.output
    res = run("cache", "export", store.cache.root, "--fingerprint", store.id,
              "--out", tmp_path / "e.npz")
    assert res.exit_code == 0


def test_errors_are_clean(tmp_path):
    res = run("cache", "info", tmp_path / "nope")
    assert res.exit_code == 2 and res.output.startswith("error: There is no cache")
    res = run("cache", "info", tmp_path)
    assert res.exit_code == 2 and "empty directory" in res.output
    store, _ = make(tmp_path)
    res = run("cache", "info", store.cache.root, "--fingerprint", "nope")
    assert res.exit_code == 2 and "has no store 'nope'" in res.output
