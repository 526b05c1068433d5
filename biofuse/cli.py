"""The `biofuse` command line: parse options, call the library, turn user errors into clean exits.

Exit codes: 0 success, 2 a user or data error (one paragraph, no traceback), 1 an internal error.
``biofuse --debug ...`` shows the traceback of any error.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from biofuse import __version__
from biofuse.errors import BiofuseError
from biofuse.pipeline import dogma, splits


class _Group(click.Group):
    """A click group that turns :class:`BiofuseError` into a clean message and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BiofuseError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            _fail(str(exc), exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # a bug: say so, point at --debug
            if ctx.find_root().params.get("debug"):
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc}. This is a bug in biofuse; "
                  "run again with `biofuse --debug ...` for the traceback and please report it.", 1)


def _fail(message: str, code: int) -> None:
    """One paragraph on one line: the terminal wraps it, and commands in it stay copyable."""
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="biofuse")
@click.option("--debug", is_flag=True, help="Show the full traceback of any error.")
def main(debug: bool) -> None:
    """biofuse: predict properties of mRNA, genes and proteins from frozen pretrained
    DNA, RNA and protein language models.

    \b
    Typical flow:
      biofuse data inspect data.csv          check how a table will be read
      biofuse cache info ~/.cache/biofuse    what embeddings are cached
    """


# ---------------------------------------------------------------------------------------------
# Shared data options

def data_options(func):
    """The options that say how a table becomes a dataset; they build a ``DataSpec``."""
    options = [
        click.option("--sequence-col", help="Column with the mRNA / CDS (T or U). Auto: mrna, "
                     "cds, sequence, seq, ..."),
        click.option("--dna-col", help="Column with a DNA sequence given separately (not derived)."),
        click.option("--protein-col", help="Column with a protein sequence given separately."),
        click.option("--label-col", "label_cols", multiple=True,
                     help="Target column; repeat for several targets. Auto: label, value, target, y."),
        click.option("--split-col", help="Column with train/val/test. Without one: a seeded "
                     "70/15/15 random split (or a group split with --group-col)."),
        click.option("--group-col", help="Column of groups (e.g. gene) that must not span splits."),
        click.option("--id-col", help="Column of unique ids. Default: row-1, row-2, ..."),
        click.option("--task", type=click.Choice(["auto", "regression", "classification"]),
                     default="auto", show_default=True),
        click.option("--orf", type=click.Choice(dogma.ORF_POLICIES),
                     default=dogma.DEFAULT_ORF_POLICY, show_default=True,
                     help="How a sequence is put on the codon grid: "
                     + "; ".join(f"'{k}': {v}" for k, v in dogma.ORF_POLICY_HELP.items())),
        click.option("--genetic-code", type=click.Choice([str(t) for t in dogma.GENETIC_CODES]),
                     default="1", show_default=True, help="NCBI genetic code table id."),
        click.option("--split-seed", type=int, default=0, show_default=True),
        click.option("--dedup", type=click.Choice(splits.DEDUP_POLICIES), default="none",
                     show_default=True, help="; ".join(f"'{k}': {v}"
                                                      for k, v in splits.DEDUP_HELP.items())),
        click.option("--sep", help="Field separator of a text table. Default: sniffed."),
    ]
    for option in reversed(options):
        func = option(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from biofuse.pipeline.data import DataSpec

        names = ["sequence_col", "dna_col", "protein_col", "label_cols", "split_col",
                 "group_col", "id_col", "task", "orf", "genetic_code", "split_seed", "dedup", "sep"]
        fields = {k: kwargs.pop(k) for k in names}
        fields["label_cols"] = tuple(fields["label_cols"])
        fields["genetic_code"] = int(fields["genetic_code"])
        kwargs["spec"] = DataSpec(path=kwargs.pop("data"), **fields)
        return func(*args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------------------------
# biofuse data

@main.group()
def data() -> None:
    """Look at a dataset the way biofuse will read it."""


@data.command("inspect")
@click.argument("data", type=click.Path(dir_okay=False))
@data_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def data_inspect(spec, as_json: bool) -> None:
    """Validate DATA (CSV, TSV, Parquet or FASTA; gzip too) and print what biofuse will use:
    rows kept and dropped with reasons, lengths, labels, splits, duplicates, content hash.

    \b
    Example:
      biofuse data inspect mRFP_Expression.csv
      biofuse data inspect genes.tsv --sequence-col cds --label-col tpm --group-col gene --json
    """
    from biofuse.pipeline.data import load_dataset
    from biofuse.pipeline.inspect import format_report

    ds = load_dataset(spec)
    if as_json:
        click.echo(json.dumps(ds.report.to_dict(), indent=2))
    else:
        click.echo(format_report(ds.report))


# ---------------------------------------------------------------------------------------------
# biofuse extract

@main.command()
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--modality", required=True, type=click.Choice(["dna", "rna", "protein", "all"]),
              help="Which sequence of each row to embed; 'all' runs the default encoder of each.")
@click.option("--model", help="Registered encoder name, model directory, or hub id. Default per "
              "modality: protein esm2_t6_8M, dna nt_v2_100m, rna rnafm. `--model onehot` needs "
              "no weights.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False),
              help="Cache directory. Default: $BIOFUSE_CACHE, else the per-user cache.")
@click.option("--layer", type=int, default=-1, show_default=True,
              help="Layer to store (0 = embeddings, -1 = last).")
@click.option("--dtype", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto",
              show_default=True, help="Compute precision; auto = bf16 on CUDA and on CPUs with "
              "AMX or AVX512-BF16, else fp32. Embeddings are stored as float16.")
@click.option("--batch-tokens", type=int, default=None,
              help="Token budget of one batch (padded length x sequences). Default: 1024 on CPU "
              "(fastest there), 16384 on CUDA.")
@click.option("--long", "long_policy", type=click.Choice(["window", "truncate", "drop"]),
              default="window", show_default=True,
              help="Sequences longer than the encoder's context: overlapping windows stitched "
              "back to full length, truncation, or dropping (counts are reported).")
@click.option("--window-overlap", type=int, default=64, show_default=True,
              help="Tokens shared by consecutive windows.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... Default: cuda if available.")
@click.option("--workers", type=int, help="Start a local Dask cluster with N workers "
              "(one per GPU on CUDA).")
@click.option("--scheduler", help="Address of an existing Dask scheduler (tcp://HOST:PORT).")
@click.option("--commit-every", type=float, default=30.0, show_default=True,
              help="Seconds between cache commits: an interrupted run keeps all but the last "
              "few seconds of work.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@data_options
def extract(spec, modality: str, model: str | None, cache_dir: str | None, layer: int, dtype: str,
            batch_tokens: int | None, long_policy: str, window_overlap: int, device: str | None,
            workers: int | None, scheduler: str | None, commit_every: float,
            as_json: bool) -> None:
    """Embed the sequences of DATA with a frozen encoder and cache per-token embeddings.

    Only sequences missing from the cache are computed; killing the command and running it
    again finishes the job.

    \b
    Example:
      biofuse extract mRFP_Expression.csv --modality protein --model esm2_t6_8M
      biofuse extract data.csv --modality dna --model ./nt-v2-100m --dtype bf16 --workers 2
      biofuse extract data.csv --modality all --model onehot
    """
    from biofuse.cache import default_cache_dir
    from biofuse.errors import ConfigError
    from biofuse.pipeline.data import load_dataset
    from biofuse.pipeline.encoders import (
        DEFAULTS,
        EncoderRequest,
        default_batch_tokens,
        default_device,
        default_dtype,
    )
    from biofuse.pipeline.extract import COLUMN
    from biofuse.pipeline.extract import extract as run

    if workers and scheduler:
        raise ConfigError("--workers and --scheduler exclude each other.",
                          "Use --workers N for a local cluster, or --scheduler ADDRESS for an "
                          "existing one.")
    if modality == "all" and model not in (None, "onehot"):
        raise ConfigError(f"--modality all with --model {model} is ambiguous: one model cannot "
                          "embed DNA, RNA and protein.",
                          "Run one extract per modality with its --model, or omit --model.")
    device = device or default_device()
    dtype = default_dtype(device) if dtype == "auto" else dtype
    batch_tokens = default_batch_tokens(device) if batch_tokens is None else batch_tokens
    ds = load_dataset(spec)
    cache_root = cache_dir or default_cache_dir()
    summaries = []
    modalities = ["dna", "rna", "protein"] if modality == "all" else [modality]
    for m in modalities:
        request = EncoderRequest(model=model or DEFAULTS[m], modality=m, layer=layer,
                                 dtype=dtype, long_policy=long_policy,
                                 window_overlap=window_overlap, device=device)
        summary = run(ds.frame[COLUMN[m]].to_list(), request, cache_root,
                      batch_tokens=batch_tokens, workers=workers, scheduler=scheduler,
                      progress=not as_json, commit_seconds=commit_every,
                      echo=lambda s: click.echo(s, err=True))
        summaries.append(summary)
        if not as_json:
            click.echo(summary.format())
        if summary.interrupted:
            break
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in summaries], indent=2))
    if any(s.interrupted for s in summaries):
        sys.exit(130)


# ---------------------------------------------------------------------------------------------
# biofuse fit / predict

def _parse_encoders(values: tuple[str, ...]) -> dict[str, str]:
    from biofuse.errors import ConfigError

    out = {}
    for v in values:
        modality, eq, name = v.partition("=")
        if not eq or modality not in ("dna", "rna", "protein") or not name:
            raise ConfigError(f"--encoder {v!r} is not MODALITY=NAME.",
                              "For example --encoder protein=esm2_t6_8M --encoder dna=onehot.")
        out[modality] = name
    return out


@main.command()
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--fusion", required=True, type=click.Choice(["none", "concat", "mil", "xattn",
                                                            "seqconcat", "isoformer"]),
              help="concat / mil / xattn / seqconcat: BioLangFusion; isoformer: IsoFormer's "
              "aggregation; none: one modality (probing).")
@click.option("--modalities", default=None,
              help="Comma-separated subset of dna,rna,protein. Default: all three (one for none).")
@click.option("--encoder", "encoders", multiple=True,
              help="MODALITY=NAME (or a fingerprint id from `biofuse cache info`). Default: "
              "protein=esm2_t6_8M, dna=nt_v2_100m, rna=rnafm.")
@click.option("--head", type=click.Choice(["textcnn", "lstm", "mlp", "meanlinear"]),
              default="textcnn", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--epochs", type=int, default=500, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--patience", type=int, default=20, show_default=True,
              help="Early stopping: epochs without a better validation metric.")
@click.option("--entropy-weights", default="0,0.01,0.1", show_default=True,
              help="MIL: the entropy-regularisation weights tried; the best on validation wins.")
@click.option("--log1p", is_flag=True, help="Regress log1p(target) (IsoFormer's expression).")
@click.option("--channels", type=int, default=None,
              help="TextCNN channels per kernel (default 100; BioLangFusion used 1280 for mil).")
@click.option("--projection", type=int, default=None,
              help="TextCNN: project the fused features to this many dims first (640 in the "
              "Bridging paper).")
@click.option("--optimizer", type=click.Choice(["adam", "adamw"]), default="adam",
              show_default=True)
@click.option("--weight-decay", type=float, default=0.0, show_default=True)
@click.option("--mil-shared-projection", is_flag=True,
              help="MIL ablation: one projection for all modalities (they must share a dim).")
@click.option("--mil-token-level", is_flag=True,
              help="MIL ablation: attention weights per codon instead of per sequence.")
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json.")
@data_options
def fit(spec, fusion: str, modalities: str | None, encoders: tuple[str, ...], head: str,
        seed: int, cache_dir: str | None, out: str, epochs: int, batch_size: int, lr: float,
        patience: int, entropy_weights: str, log1p: bool, channels: int | None,
        projection: int | None, optimizer: str,
        weight_decay: float, mil_shared_projection: bool, mil_token_level: bool,
        as_json: bool) -> None:
    """Train a fusion model on the cached embeddings of DATA and write a run directory:
    config.json, metrics.json, predictions.parquet, attention.parquet (mil), model.pt,
    train_log.csv.

    \b
    Example:
      biofuse fit mRFP_Expression.csv --fusion mil --cache CACHE --out runs/mil
      biofuse fit data.csv --fusion none --modalities protein --encoder protein=onehot --out runs/p
    """
    from biofuse.cache import default_cache_dir
    from biofuse.errors import ConfigError
    from biofuse.pipeline.data import load_dataset
    from biofuse.pipeline.fit import FitConfig
    from biofuse.pipeline.fit import fit as run

    mods = tuple(m.strip() for m in modalities.split(",")) if modalities else (
        ("protein",) if fusion == "none" else ("dna", "rna", "protein"))
    try:
        weights = tuple(float(w) for w in entropy_weights.split(","))
    except ValueError as exc:
        raise ConfigError(f"--entropy-weights {entropy_weights!r} is not a list of numbers.",
                          "For example --entropy-weights 0,0.01,0.1.") from exc
    if (mil_shared_projection or mil_token_level) and fusion != "mil":
        raise ConfigError("--mil-shared-projection and --mil-token-level apply to --fusion mil.",
                          "Drop them, or use --fusion mil.")
    if (channels or projection) and head != "textcnn":
        raise ConfigError("--channels and --projection apply to --head textcnn.",
                          "Drop them, or use --head textcnn.")
    head_options = {k: v for k, v in (("channels", channels), ("projection", projection)) if v}
    fusion_options = {k: True for k, on in (("shared_projection", mil_shared_projection),
                                            ("token_level", mil_token_level)) if on}
    cfg = FitConfig(fusion=fusion, modalities=mods, encoders=_parse_encoders(encoders),
                    head=head, seed=seed, epochs=epochs, batch_size=batch_size, lr=lr,
                    weight_decay=weight_decay, optimizer=optimizer, patience=patience,
                    log1p=log1p, entropy_weights=weights, fusion_options=fusion_options,
                    head_options=head_options)
    ds = load_dataset(spec)
    metrics = run(ds, cfg, cache_dir or default_cache_dir(), Path(out),
                  echo=lambda s: click.echo(s, err=True))
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    for split in ("val", "test"):
        m = metrics[split]
        if not m:
            continue
        if metrics["task"] == "classification":
            click.echo(f"{split:5s} accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}")
        else:
            click.echo(f"{split:5s} Spearman {m['spearman']:.4f}  Pearson {m['pearson']:.4f}  "
                       f"R2 {m['r2']:.4f}  MSE {m['mse']:.4g}")
    click.echo(f"run written to {out}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Predictions file (.parquet or .csv).")
def predict(run_dir: str, data: str, cache_dir: str | None, out: str) -> None:
    """Score the sequences of DATA with the model trained in RUN_DIR (their embeddings must be
    in the cache: run `biofuse extract` with the same encoders first).

    \b
    Example:
      biofuse predict runs/mil new_sequences.csv --out predictions.parquet
    """
    from biofuse.cache import default_cache_dir
    from biofuse.pipeline.predict import predict as run

    n = run(Path(run_dir), data, cache_dir or default_cache_dir(), Path(out))
    click.echo(f"wrote {n} predictions to {out}")


# ---------------------------------------------------------------------------------------------
# biofuse cache

@main.group()
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
        click.echo(f"{i['id']}\n  model {i['model_id']} @ {i['revision']}, layer {i['layer']}, "
                   f"{i['dtype']} compute, long sequences: {i['long_policy']}")
        click.echo(f"  {i['entries']} sequences, {i['tokens']} tokens x {i['dim']} "
                   f"({i['storage_dtype']}) in {i['parts']} parts"
                   + (f", {i['duplicate_entries']} duplicate entries" if i["duplicate_entries"]
                      else ""))
        ratio = f" ({i['disk_vs_raw']:.3f}x raw)" if i["disk_vs_raw"] else ""
        click.echo(f"  {_size(i['bytes_on_disk'])} on disk{ratio}, {_size(i['raw_bytes'])} raw "
                   f"{i['storage_dtype']} data")
        if i["uncommitted_parts"]:
            click.echo(f"  {i['uncommitted_parts']} uncommitted parts "
                       f"({_size(i['uncommitted_bytes'])}): `biofuse cache gc` removes them")


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

    from biofuse.cache.maintenance import open_for_maintenance, verify_store

    reports = [verify_store(s, data=not quick) for s in open_for_maintenance(cache_dir, fingerprint_id)]
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
    """Clean CACHE_DIR: remove leftovers of interrupted writes, optionally damaged parts, and
    optionally compact many small parts into few large ones.

    \b
    Example:
      biofuse cache gc ~/.cache/biofuse/embeddings --compact
    """
    from biofuse.cache.maintenance import gc_store, open_for_maintenance

    for s in open_for_maintenance(cache_dir, fingerprint_id):
        r = gc_store(s, min_age_s=min_age, drop_corrupt=drop_corrupt, compact=compact)
        click.echo(f"{r.store}: removed {r.temps_removed} uncommitted parts "
                   f"({_size(r.bytes_freed)}), {r.damaged_removed} damaged parts; "
                   f"parts {r.parts_before} -> {r.parts_after}")


@cache.command("export")
@_cache_arg
@click.option("--keys", "keys_file", type=click.Path(dir_okay=False, exists=True),
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

    stores = open_for_maintenance(cache_dir, fingerprint_id)
    if len(stores) != 1:
        ids = ", ".join(s.id for s in stores) or "none"
        raise ConfigError(f"{cache_dir} holds {len(stores)} fingerprints ({ids}); export takes one.",
                          "Name it with --fingerprint ID.")
    keys = None
    if keys_file:
        keys = [line.strip() for line in Path(keys_file).read_text().splitlines() if line.strip()]
    n = export_store(stores[0], keys, Path(out), fmt)
    click.echo(f"wrote {n} embeddings to {out}")


# ---------------------------------------------------------------------------------------------
# biofuse demo

@main.command()
@click.option("--data", "data_path", type=click.Path(dir_okay=False),
              help="Run on this table instead of the shipped synthetic example.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="biofuse-demo",
              show_default=True, help="Where the cache and the run directory go.")
@click.option("--epochs", type=int, default=150, show_default=True)
def demo(data_path: str | None, out_dir: str, epochs: int) -> None:
    """Run biofuse end to end on a small dataset, on the CPU, with no download: validate the
    table, extract one-hot embeddings of DNA, RNA and protein into a cache, train a gated-
    attention MIL fusion with a TextCNN head, and report validation and test metrics.

    \b
    Example:
      biofuse demo
      biofuse demo --data mRFP_Expression.csv --out demo-mrfp
    """
    from biofuse.examples import EXAMPLE_CSV
    from biofuse.pipeline.data import DataSpec, load_dataset
    from biofuse.pipeline.encoders import EncoderRequest
    from biofuse.pipeline.extract import COLUMN
    from biofuse.pipeline.extract import extract as run_extract
    from biofuse.pipeline.fit import FitConfig
    from biofuse.pipeline.fit import fit as run_fit

    spec = (DataSpec(path=str(data_path)) if data_path
            else DataSpec(path=str(EXAMPLE_CSV), label_cols=("expression",)))
    ds = load_dataset(spec)
    r = ds.report
    click.echo(f"1/3 data: {r.rows_kept} of {r.rows_read} rows kept, splits "
               + ", ".join(f"{k} {v}" for k, v in r.split_sizes.items())
               + f" ({r.split_source}); `biofuse data inspect` shows the full report")
    out = Path(out_dir)
    cache = out / "cache"
    for m in ("dna", "rna", "protein"):
        s = run_extract(ds.frame[COLUMN[m]].to_list(),
                        EncoderRequest(model="onehot", modality=m), cache, progress=False)
        click.echo(f"2/3 extract {m:7s}: {s.counts.computed} computed, {s.cached} cached "
                   f"(one-hot; real encoders: `biofuse extract --model esm2_t6_8M` ...)")
    cfg = FitConfig(fusion="mil", encoders={m: "onehot" for m in ("dna", "rna", "protein")},
                    epochs=epochs, entropy_weights=(0.0, 0.1), lr=3e-3)
    metrics = run_fit(ds, cfg, cache, out / "run", echo=lambda s: click.echo(f"3/3 fit {s}"))
    for split in ("val", "test"):
        m = metrics[split]
        if m and metrics["task"] == "regression":
            click.echo(f"    {split:4s} Spearman {m['spearman']:.3f}  Pearson {m['pearson']:.3f}  "
                       f"R2 {m['r2']:.3f}")
        elif m:
            click.echo(f"    {split:4s} accuracy {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}")
    click.echo(f"run directory: {out / 'run'} (config, metrics, predictions, MIL attention, model)")


if __name__ == "__main__":  # pragma: no cover
    main()
