"""One damaged part costs only that part, through the CLI: verify names it (exit 3), info, export
and fit keep working on the rest, `gc --drop-corrupt` removes it, and re-extracting restores it.
A store whose own metadata is lost is found by verify and rebuilt by gc."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from biofuse.cache import EmbeddingCache
from biofuse.cache.parts import index_digest
from biofuse.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
CODONS = ["GCU", "AAA", "GAU", "UGG", "CAC", "AUU", "CCG", "UUC"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def filled(tmp_path):
    """A protein one-hot store with two parts: rows 0-14, then rows 15-29."""
    rng = np.random.default_rng(0)
    rows = ["id,sequence,label"] + [
        f"r{i},AUG{''.join(rng.choice(CODONS, 10 + i))}UAA,{rng.normal():.3f}" for i in range(30)]
    table, half = tmp_path / "d.csv", tmp_path / "half.csv"
    table.write_text("\n".join(rows) + "\n")
    half.write_text("\n".join(rows[:16]) + "\n")
    cache = tmp_path / "cache"
    for t in (half, table):
        assert run("extract", t, "--modality", "protein", "--model", "onehot", "--cache",
                   cache).exit_code == 0
    (store,) = EmbeddingCache(cache).stores()
    assert len(store.parts) == 2
    return table, cache, store.path


def _first_part(store_dir: Path) -> Path:
    return sorted((store_dir / "parts").iterdir())[0]


def _rewrite_index(part: Path, keys=None, offsets=None, n_tokens=None) -> None:
    """Edit a part's index the way a careful vandal would: digest recomputed to match."""
    g = zarr.open_group(str(part), mode="r+")
    k = g["keys"][:] if keys is None else np.array(keys, dtype=object)
    o = g["offsets"][:] if offsets is None else np.asarray(offsets)
    g["keys"][:] = k
    g["offsets"][:] = o
    doc = json.loads((part / "zarr.json").read_text())
    doc["attributes"]["index_sha256"] = index_digest(k, o)
    if n_tokens is not None:
        doc["attributes"]["n_tokens"] = n_tokens
    (part / "zarr.json").write_text(json.dumps(doc))


def _delete_offsets(part):
    for f in (part / "offsets" / "c").rglob("*"):
        if f.is_file():
            f.unlink()


def _delete_keys(part):
    for f in (part / "keys" / "c").rglob("*"):
        if f.is_file():
            f.unlink()


def _delete_part_metadata(part):
    (part / "zarr.json").unlink()


def _crafted_keys(part):
    keys = zarr.open_group(str(part), mode="r")["keys"][:].tolist()
    keys[0], keys[1], keys[2] = "../../x", "/etc/passwd", "a" * 5000
    _rewrite_index(part, keys=keys)


def _absurd_size(part):
    off = zarr.open_group(str(part), mode="r")["offsets"][:]
    off[-1] = 10 ** 16
    _rewrite_index(part, offsets=off, n_tokens=10 ** 16)


DAMAGE = {"offsets deleted": _delete_offsets, "keys deleted": _delete_keys,
          "part zarr.json deleted": _delete_part_metadata, "crafted keys": _crafted_keys,
          "absurd size": _absurd_size}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_one_damaged_part_costs_only_that_part(filled, tmp_path, damage):
    table, cache, store_dir = filled
    part = _first_part(store_dir)
    DAMAGE[damage](part)

    res = run("cache", "verify", cache)
    assert res.exit_code == 3, res.output
    assert part.name in res.output and "DAMAGED" in res.output

    res = run("cache", "info", cache, "--json")  # the rest stays readable
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)[0]
    assert info["entries"] == 15 and info["damaged_parts"] == 1

    out = tmp_path / "emb.npz"
    res = run("cache", "export", cache, "--out", out)
    assert res.exit_code == 0, res.output
    names = np.load(out).files
    assert len(names) == 15 and all(len(n) == 32 and "/" not in n for n in names)

    # fit on the rows whose embeddings are intact: the missing ones are named, with the fix
    res = run("fit", table, "--fusion", "none", "--modalities", "protein", "--encoder",
              "protein=onehot", "--cache", cache, "--out", tmp_path / "run", "--epochs", "1")
    assert res.exit_code == 2 and "missing" in res.output and "biofuse extract" in res.output

    res = run("cache", "gc", cache, "--drop-corrupt")
    assert res.exit_code == 0 and "1 damaged parts" in res.output, res.output
    assert run("cache", "verify", cache).exit_code == 0
    res = run("extract", table, "--modality", "protein", "--model", "onehot", "--cache", cache)
    assert res.exit_code == 0 and "15 computed" in res.output, res.output
    res = run("fit", table, "--fusion", "none", "--modalities", "protein", "--encoder",
              "protein=onehot", "--cache", cache, "--out", tmp_path / "run", "--epochs", "1")
    assert res.exit_code == 0, res.output


def test_a_store_without_its_metadata_is_found_and_rebuilt(filled):
    table, cache, store_dir = filled
    (store_dir / "zarr.json").unlink()
    res = run("cache", "verify", cache)
    assert res.exit_code == 3 and store_dir.name in res.output, res.output
    res = run("cache", "gc", cache)
    assert res.exit_code == 0 and "rebuilt" in res.output, res.output
    assert run("cache", "verify", cache).exit_code == 0
    info = json.loads(run("cache", "info", cache, "--json").stdout)
    assert info[0]["entries"] == 30 and info[0]["id"] == store_dir.name


def test_damage_warning_is_one_line_on_the_command_line(filled):
    import subprocess

    table, cache, store_dir = filled
    _delete_offsets(_first_part(store_dir))
    res = subprocess.run([sys.executable, "-m", "biofuse.cli", "cache", "info", str(cache)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    warning = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "gc --drop-corrupt" in warning[0]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
