"""The `biofuse` command line: parse options, call the library, turn user errors into clean exits.

Exit codes: 0 success, 2 a user or data error (one paragraph, no traceback), 1 an internal error.
``biofuse --debug ...`` shows the traceback of any error.
"""

from __future__ import annotations

import errno
import functools
import json
import sys
from pathlib import Path

import click

from biofuse import __version__
from biofuse.errors import BiofuseError
from biofuse.modality import ALL, NAMES
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
        except click.UsageError as exc:  # a bad flag or argument: one paragraph, like the rest
            if ctx.find_root().params.get("debug"):
                raise
            command = exc.ctx.command_path if exc.ctx is not None else "biofuse"
            _fail(f"{exc.format_message()} (`{command} --help` lists the options).", 2)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except OSError as exc:  # the user's environment (a full or read-only disk), not a bug
            if exc.errno not in _ENVIRONMENT_ERRNOS or ctx.find_root().params.get("debug"):
                raise
            _fail(_environment_message(exc), 2)
        except Exception as exc:  # a bug: say so, point at --debug
            if ctx.find_root().params.get("debug"):
                raise
            _fail(f"internal error: {type(exc).__name__}: {exc}. This is a bug in biofuse; "
                  "run again with `biofuse --debug ...` for the traceback and please report it.", 1)


_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _environment_message(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = ("Free space there (`biofuse cache gc` removes leftovers of interrupted writes), "
               "or point --cache / --out at a disk with room, and run the same command again: "
               "everything committed so far is kept.")
    else:
        fix = "Point --cache / --out at a directory you can write to, or fix its permissions."
    return f"{exc.strerror}{where}. {fix}"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one paragraph on stderr, like errors."""
    click.echo(f"warning: {' '.join(str(message).split())}", err=True)


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
      biofuse extract data.csv --modality all --model onehot --cache CACHE
      biofuse fit data.csv --fusion mil --encoder dna=onehot ... --cache CACHE --out run
      biofuse cache info CACHE               what embeddings are cached
    """
    import warnings

    warnings.showwarning = _show_warning
    if not debug:  # numbers that could not be computed are reported as such in the results
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="numpy")


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
# Options from the options dataclasses and registries (one declaration per option)

def _click_type(f, hint):
    from biofuse.options import _base_type

    choices = f.metadata.get("choices")
    if choices:
        return click.Choice(list(choices))
    base = _base_type(hint)
    return {int: int, float: float}.get(base, str)


def dataclass_options(cls, *, dest=lambda f: f.name, defaults: bool = True,
                      required: tuple[str, ...] = ()):
    """click options for the option fields of ``cls`` (see biofuse.options)."""
    import dataclasses
    import typing

    from biofuse.options import _base_type, flag_name, option_fields

    hints = typing.get_type_hints(cls)

    def decorate(func):
        for f in reversed(option_fields(cls)):
            if not f.metadata.get("cli", True):
                continue
            kind = _base_type(hints[f.name])
            flag = flag_name(f, getattr(cls, "prefix", ""))
            default = f.default if f.default is not dataclasses.MISSING else None
            kwargs = {"help": f.metadata["help"]}
            if not defaults and default not in (None, False):
                shown = ",".join(map(str, default)) if kind is tuple else default
                kwargs["help"] += f"  [default: {shown}]"
            if kind is bool:
                kwargs.update(is_flag=True, default=bool(default) if defaults else None)
            else:
                kwargs["type"] = _click_type(f, hints[f.name])
                if kind is tuple and "comma" not in kwargs["help"]:
                    kwargs["help"] += " (comma-separated)"
                if f.name in required:
                    kwargs["required"] = True
                elif defaults and default is not None:
                    kwargs.update(default=(",".join(map(str, default)) if kind is tuple
                                           else default), show_default=True)
            func = click.option(flag, dest(f), **kwargs)(func)
        return func

    return decorate


def _values(cls, kwargs: dict, *, dest=lambda f: f.name, given_only: bool = False) -> dict:
    """Pop the parsed values of ``cls``'s options from ``kwargs``; comma lists become tuples."""
    import typing

    from biofuse.errors import ConfigError
    from biofuse.options import _base_type, flag_name, option_fields

    hints = typing.get_type_hints(cls)
    out = {}
    for f in option_fields(cls):
        if not f.metadata.get("cli", True) or dest(f) not in kwargs:
            continue
        value = kwargs.pop(dest(f))
        if given_only and (value is None or value is False):
            continue
        if isinstance(value, str) and _base_type(hints[f.name]) is tuple:
            hint = hints[f.name]
            if typing.get_origin(hint) is not tuple:  # Optional[tuple[...]]
                hint = next(a for a in typing.get_args(hint) if typing.get_origin(a) is tuple)
            (elem,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
            try:
                value = tuple(elem(v) for v in value.split(",") if v.strip())
            except ValueError:
                raise ConfigError(f"{flag_name(f, getattr(cls, 'prefix', ''))} {value!r} is not "
                                  f"a comma-separated list of {elem.__name__} values.",
                                  f"For example {','.join(map(str, f.default))}.") from None
        out[f.name] = value
    return out


def method_options(registry: dict, kind: str):
    """click options for every registered method's own options (``--mil-dim``, ``--channels``,
    ...), parsed as ``kind:method:field`` with no default so that what was given is known."""
    def decorate(func):
        for name in sorted(registry, reverse=True):
            cls = registry[name].Options
            func = dataclass_options(cls, dest=lambda f, n=name: f"{kind}__{n}__{f.name}",
                                     defaults=False)(func)
        return func

    return decorate


def _method_values(registry: dict, kind: str, chosen: str, kwargs: dict) -> dict:
    """The options given for the ``chosen`` method; an option of another method is an error."""
    from biofuse.errors import ConfigError
    from biofuse.options import flag_name, option_fields

    chosen_values = {}
    for name in sorted(registry):
        cls = registry[name].Options
        given = _values(cls, kwargs, dest=lambda f, n=name: f"{kind}__{n}__{f.name}",
                        given_only=True)
        if name == chosen:
            chosen_values = given
        elif given:
            flags = {f.name: flag_name(f, cls.prefix) for f in option_fields(cls)}
            used = ", ".join(flags[k] for k in given)
            raise ConfigError(f"{used} apply to --{kind} {name}, not --{kind} {chosen}.",
                              f"Drop them, or use --{kind} {name}.")
    return chosen_values


# ---------------------------------------------------------------------------------------------
# biofuse extract

def _extract_options():
    from biofuse.pipeline.extract import ExtractOptions

    return dataclass_options(ExtractOptions)


@main.command()
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--modality", required=True, type=click.Choice([*NAMES, "all"]),
              help="Which sequence of each row to embed; 'all' runs the default encoder of each.")
@_extract_options()
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False),
              help="Cache directory. Default: $BIOFUSE_CACHE, else the per-user cache.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@data_options
def extract(spec, modality: str, cache_dir: str | None, as_json: bool, **options) -> None:
    """Embed the sequences of DATA with a frozen encoder and cache per-token embeddings.

    Only sequences missing from the cache are computed; killing the command and running it
    again finishes the job. Registered encoders: see `biofuse encoders`.

    \b
    Example:
      biofuse extract mRFP_Expression.csv --modality protein --model esm2_t6_8M
      biofuse extract data.csv --modality dna --model ./nt-v2-100m --dtype bf16 --workers 2
      biofuse extract data.csv --modality all --model onehot
    """
    from biofuse import api

    summaries = api.extract(spec, modality=modality, cache=cache_dir, progress=not as_json,
                            echo=lambda s: click.echo(s, err=True), **options)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in summaries], indent=2))
    else:
        for s in summaries:
            click.echo(s.format())
    if any(s.interrupted for s in summaries):
        sys.exit(130)


@main.command()
@click.option("--json", "as_json", is_flag=True)
def encoders(as_json: bool) -> None:
    """List the registered encoders: name, modality, dim, nucleotides per token, source."""
    from biofuse.pipeline.encoders import ENCODERS

    rows = [{"name": i.name, "modality": str(i.modality), "dim": i.dim,
             "nt_per_token": i.nt_per_token, "source": i.source, "extra": i.extra,
             "description": i.description}
            for by in ENCODERS.values() for i in by.values()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        extra = f"  [pip extra: {r['extra']}]" if r["extra"] else ""
        click.echo(f"{r['name']:20s} {r['modality']:8s} dim {r['dim']:<5d} "
                   f"{r['description']}{extra}")


# ---------------------------------------------------------------------------------------------
# biofuse fit / predict

def _parse_encoders(values: tuple[str, ...]) -> dict[str, str]:
    from biofuse.errors import ConfigError

    out = {}
    for v in values:
        modality, eq, name = v.partition("=")
        if not eq or modality not in NAMES or not name:
            raise ConfigError(f"--encoder {v!r} is not MODALITY=NAME.",
                              "For example --encoder protein=esm2_t6_8M --encoder dna=onehot.")
        out[modality] = name
    return out


def _fit_options():
    from biofuse.fusion import FUSIONS
    from biofuse.heads import HEADS
    from biofuse.pipeline.fit import FitOptions

    def decorate(func):
        func = method_options(HEADS, "head")(func)
        func = method_options(FUSIONS, "fusion")(func)
        return dataclass_options(FitOptions, required=("fusion",))(func)

    return decorate


@main.command()
@click.argument("data", type=click.Path(dir_okay=False))
@_fit_options()
@click.option("--encoder", "encoders", multiple=True,
              help="MODALITY=NAME (or a fingerprint id from `biofuse cache info`). Default: "
              + ", ".join(f"{m}={m.default_encoder}" for m in ALL) + ".")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json.")
@data_options
def fit(spec, encoders: tuple[str, ...], cache_dir: str | None, out: str, as_json: bool,
        **kwargs) -> None:
    """Train a fusion model on the cached embeddings of DATA and write a run directory:
    config.json, metrics.json, predictions.parquet, attention.parquet (mil), model.pt,
    train_log.csv. Prints a progress line per epoch (or every few seconds); Ctrl-C keeps the
    best model so far and marks the run interrupted (exit 130).

    \b
    Fusions: none (one modality), concat / mil / xattn / seqconcat (BioLangFusion),
    isoformer (IsoFormer's aggregation). Each method's own options are the
    --<method>-... flags; the TextCNN head's are --channels, --projection, --textcnn-... .

    \b
    Example:
      biofuse fit mRFP_Expression.csv --fusion mil --cache CACHE --out runs/mil
      biofuse fit data.csv --fusion none --modalities protein --encoder protein=onehot --out runs/p
    """
    from biofuse import api
    from biofuse.fusion import FUSIONS
    from biofuse.heads import HEADS
    from biofuse.pipeline.fit import FitOptions
    from biofuse.pipeline.metrics import format_metrics

    options = _values(FitOptions, kwargs)
    options["fusion_options"] = _method_values(FUSIONS, "fusion", options["fusion"], kwargs)
    options["head_options"] = _method_values(HEADS, "head", options["head"], kwargs)
    assert not kwargs, f"unparsed options {sorted(kwargs)}"
    result = api.fit(spec, out=out, cache=cache_dir, encoders=_parse_encoders(encoders),
                     echo=lambda s: click.echo(s, err=True), **options)
    if as_json:
        click.echo(json.dumps(result.metrics, indent=2))
    else:
        for line in format_metrics(result.metrics):
            click.echo(line)
        click.echo(f"run written to {out}" + (" (interrupted: the best model so far)"
                                              if result.interrupted else ""))
    if result.interrupted:
        sys.exit(130)


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
    from biofuse import api

    frame = api.predict(run_dir, data, cache=cache_dir, out=out)
    click.echo(f"wrote {frame.height} predictions to {out}")


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
                   f"{i['compute_dtype']} compute, long sequences: {i['long_policy']}")
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
@click.option("--epochs", type=click.IntRange(min=1), default=150, show_default=True)
def demo(data_path: str | None, out_dir: str, epochs: int) -> None:
    """Run biofuse end to end on a small dataset, on the CPU, with no download: validate the
    table, extract one-hot embeddings of DNA, RNA and protein into a cache, train a gated-
    attention MIL fusion with a TextCNN head, and report validation and test metrics.

    \b
    Example:
      biofuse demo
      biofuse demo --data mRFP_Expression.csv --out demo-mrfp
    """
    from biofuse import api
    from biofuse.pipeline.metrics import format_metrics

    result = api.demo(data=data_path, out=out_dir, epochs=epochs, echo=click.echo)
    for line in format_metrics(result.metrics, digits=3):
        click.echo(f"    {line}")
    click.echo(f"run directory: {result.run_dir} (config, metrics, predictions, MIL attention, "
               "model)")
    if result.interrupted:
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
