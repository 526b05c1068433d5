"""`biofuse cache info | verify | gc | export`: looking after an embedding cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.group()
def cache() -> None:
    """Inspect, check, clean and export an embedding cache (see docs/cache-format.md)."""


def _cache_arg(func):
    func = click.option("--fingerprint", "fingerprint_id",
                        help="Only this fingerprint id (see `biofuse cache info`).")(func)
    return click.argument("cache_dir", type=click.Path(file_okay=False))(func)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


@cache.command("info")
@_cache_arg
@click.option("--json", "as_json", is_flag=True)
def cache_info(cache_dir: str, fingerprint_id: str | None, as_json: bool) -> None:
    """What CACHE_DIR holds: per encoder fingerprint, entries, tokens, bytes on disk vs raw.

    \b
    Example:
      biofuse cache info ~/.cache/biofuse/embeddings
    """
    from biofuse.cache.maintenance import open_for_maintenance, store_info

    infos = [store_info(s) for s in open_for_maintenance(cache_dir, fingerprint_id)]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    if not infos:
        click.echo(f"{cache_dir}: a biofuse cache with no embeddings yet")
    for i in infos:
        compute = ("" if i["compute_dtype"] in (None, "none")
                   else f", {i['compute_dtype']} compute")
        click.echo(f"{i['id']}\n  model {i['model_id']} @ {i['revision']}, layer {i['layer']}"
                   f"{compute}, long sequences: {_long_policy(i['long_policy'])}")
        click.echo(f"  {i['entries']:,} sequences, {i['tokens']:,} tokens x {i['dim']} "
                   f"({i['storage_dtype']}) in {i['parts']} part{'' if i['parts'] == 1 else 's'}"
                   + (f", {i['duplicate_entries']} duplicate entries" if i["duplicate_entries"]
                      else ""))
        ratio = f" ({i['disk_vs_raw']:.3f}x raw)" if i["disk_vs_raw"] else ""
        click.echo(f"  {_size(i['bytes_on_disk'])} on disk{ratio}, {_size(i['raw_bytes'])} raw "
                   f"{i['storage_dtype']} data")
        if i["uncommitted_parts"]:
            click.echo(f"  {i['uncommitted_parts']} uncommitted parts "
                       f"({_size(i['uncommitted_bytes'])}): `biofuse cache gc` removes them")


def _long_policy(policy: str) -> str:
    """The fingerprint's "window:<context>:<overlap>" in words (an RNN has no context limit)."""
    from biofuse.cache.fingerprint import parse_long_policy

    _, context, overlap = parse_long_policy(policy)
    if context is None:
        return str(policy)
    if context >= 1 << 30:
        return "whole (no context limit)"
    return f"windows of {context:,} tokens overlapping by {overlap}"


@cache.command("verify")
@_cache_arg
@click.option("--quick", is_flag=True, help="Check indexes and files only, not chunk contents.")
@click.option("--json", "as_json", is_flag=True)
def cache_verify(cache_dir: str, fingerprint_id: str | None, quick: bool, as_json: bool) -> None:
    """Check that every committed part of CACHE_DIR is readable and consistent: offsets, keys,
    files, chunk checksums (crc32c), no NaN/Inf. Exit code 3 if anything is damaged.

    \b
    Example:
      biofuse cache verify ~/.cache/biofuse/embeddings
    """
    from dataclasses import asdict

    from biofuse.cache.maintenance import open_for_maintenance, orphan_reports, verify_store

    reports = [verify_store(s, data=not quick) for s in open_for_maintenance(cache_dir, fingerprint_id)]
    if not fingerprint_id:
        reports += orphan_reports(cache_dir)
    if as_json:
        click.echo(json.dumps([asdict(r) | {"ok": r.ok} for r in reports], indent=2))
    else:
        for r in reports:
            state = "ok" if r.ok else f"DAMAGED ({len(r.damaged)} parts)"
            click.echo(f"{r.store}: {r.parts_checked} parts, {r.entries} entries: {state}")
            for part, problem in r.damaged.items():
                click.echo(f"  part {part}: {problem}")
            if r.uncommitted_parts:
                click.echo(f"  {r.uncommitted_parts} uncommitted parts (ignored by readers)")
    if not all(r.ok for r in reports):
        click.echo(f"Damaged parts are never read silently. `biofuse cache gc --drop-corrupt "
                   f"{cache_dir}` removes them; the next extract recomputes their sequences.",
                   err=True)
        sys.exit(3)


@cache.command("gc")
@_cache_arg
@click.option("--min-age", type=float, default=3600, show_default=True,
              help="Remove uncommitted parts older than this many seconds (younger ones may "
              "belong to a running extract).")
@click.option("--drop-corrupt", is_flag=True, help="Remove parts that fail verification.")
@click.option("--compact", is_flag=True, help="Rewrite all parts into few large ones, without "
              "duplicates (run it when no extract is writing).")
def cache_gc(cache_dir: str, fingerprint_id: str | None, min_age: float, drop_corrupt: bool,
             compact: bool) -> None:
    """Clean CACHE_DIR: rebuild a store's lost metadata from its parts, remove leftovers of
    interrupted writes, optionally damaged parts, and optionally compact many small parts into
    few large ones.

    \b
    Example:
      biofuse cache gc ~/.cache/biofuse/embeddings --compact
    """
    from biofuse.cache.maintenance import adopt_orphans, gc_store, open_for_maintenance

    for name, rebuilt in adopt_orphans(cache_dir):
        click.echo(f"{name}: " + ("store metadata rebuilt from its parts" if rebuilt else
                                  "store metadata is missing and no part records a matching "
                                  "fingerprint; move the directory away"))
    for s in open_for_maintenance(cache_dir, fingerprint_id):
        r = gc_store(s, min_age_s=min_age, drop_corrupt=drop_corrupt, compact=compact)
        if r.skipped:
            click.echo(f"{r.store}: left alone: {r.skipped}")
            continue
        for name in r.links_replaced:
            click.echo(f"{r.store}: {name}/ was a symbolic link; replaced by a folder of the "
                       "store (its target was not touched)")
        click.echo(f"{r.store}: removed {r.temps_removed} uncommitted parts "
                   f"({_size(r.bytes_freed)}), {r.damaged_removed} damaged parts; "
                   f"parts {r.parts_before} -> {r.parts_after}")


@cache.command("export")
@_cache_arg
@click.option("--keys", "keys_file", type=click.Path(dir_okay=False),
              help="File with one sequence key per line. Default: every entry.")
@click.option("--format", "fmt", type=click.Choice(["npz", "parquet"]), default="npz",
              show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False))
def cache_export(cache_dir: str, fingerprint_id: str | None, keys_file: str | None, fmt: str,
                 out: str) -> None:
    """Write embeddings of one fingerprint to plain files: npz (one [tokens, dim] array per key)
    or parquet (key, n_tokens, embedding).

    \b
    Example:
      biofuse cache export CACHE --fingerprint esm2_t6_8M_UR50D-0123abcd --format parquet --out emb.parquet
    """
    from biofuse.cache.maintenance import export_store, open_for_maintenance
    from biofuse.errors import ConfigError
    from biofuse.files import read_text

    stores = open_for_maintenance(cache_dir, fingerprint_id)
    if len(stores) != 1:
        ids = ", ".join(s.id for s in stores) or "none"
        raise ConfigError(f"{cache_dir} holds {len(stores)} fingerprints ({ids}); export takes one.",
                          "Name it with --fingerprint ID.")
    out_path = Path(out)
    if out_path.suffix.lower() != f".{fmt}":
        raise ConfigError(f"--out {out} does not end in .{fmt}, the format asked for "
                          f"(--format {fmt}).", f"Name the file {out_path.stem or 'emb'}.{fmt}, "
                          "or pick the --format of its suffix.")
    if out_path.is_dir():
        raise ConfigError(f"--out {out} is a folder.", f"Name a file, e.g. {out_path / 'emb'}.{fmt}.")
    keys = None
    if keys_file:
        text = read_text(keys_file, "keys file", "Pass a text file with one sequence key per line.")
        keys = [line.strip() for line in text.splitlines() if line.strip()]
        unknown = [k for k in keys if k not in stores[0]]
        if unknown:
            raise ConfigError(f"{len(unknown)} of the {len(keys)} keys in {keys_file} are not in "
                              f"the store {stores[0].id} (e.g. {unknown[0][:40]!r}).",
                              "Keys are the 32 hex digits `biofuse cache export` and "
                              "`biofuse.embeddings` use; list the store's with --format parquet.")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    n = export_store(stores[0], keys, out_path, fmt)
    click.echo(f"wrote {n} embeddings to {out_path}")
