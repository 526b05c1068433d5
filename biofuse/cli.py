"""The `biofuse` command line: parse options, call the library, turn user errors into clean exits.

Exit codes: 0 success, 2 a user or data error (one paragraph, no traceback), 1 an internal error.
``biofuse --debug ...`` shows the traceback of any error.
"""

from __future__ import annotations

import errno
import json
import sys

import click

from biofuse.cli_cache import cache
from biofuse.cli_experiments import demo, report, run
from biofuse.cli_options import (
    data_options,
    dataclass_options,
    method_options,
    parsed_method_values,
    parsed_values,
)
from biofuse.errors import BiofuseError
from biofuse.modality import ALL, NAMES
from biofuse.version import __version__


class _Group(click.Group):
    """A click group that turns :class:`BiofuseError` into a clean message and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BiofuseError as exc:
            if ctx.find_root().params.get("debug"):
                raise
            problems = getattr(exc, "problems", None)
            if problems:  # a file with several problems: one line each
                click.echo(f"error: {exc.problem.split(':')[0]}:", err=True)
                for p in problems:
                    click.echo(f"  - {' '.join(p.split())}", err=True)
                click.echo(f"  {exc.fix}", err=True)
                sys.exit(exc.exit_code)
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
      biofuse finetune data.csv --modality protein --model esm2_t6_8M --out ft   (optional)
      biofuse cache info CACHE               what embeddings are cached
    """
    import warnings

    warnings.showwarning = _show_warning
    if not debug:  # numbers that could not be computed are reported as such in the results
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="numpy")


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
    from biofuse import api
    from biofuse.pipeline.data import format_report

    ds = api.load_dataset(spec)
    if as_json:
        click.echo(json.dumps(ds.report.to_dict(), indent=2))
    else:
        click.echo(format_report(ds.report))


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
            for i in ENCODERS.values()]
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
    from biofuse.pipeline.train import FitOptions

    def decorate(func):
        func = method_options(HEADS, "head")(func)
        func = method_options(FUSIONS, "fusion")(func)
        return dataclass_options(FitOptions)(func)

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
    from biofuse.pipeline.train import FitOptions

    options = parsed_values(FitOptions, kwargs)
    if options["fusion"] is None and HEADS[options["head"]].kind != "probe":
        raise click.UsageError(f"Missing option '--fusion'. Choose from: "
                               f"{', '.join(sorted(FUSIONS))} (a scikit-learn head, "
                               "--head ridge / logistic / gbm, needs none)")
    options["fusion_options"] = parsed_method_values(FUSIONS, "fusion", options["fusion"], kwargs)
    options["head_options"] = parsed_method_values(HEADS, "head", options["head"], kwargs)
    assert not kwargs, f"unparsed options {sorted(kwargs)}"
    result = api.fit(spec, out=out, cache=cache_dir, encoders=_parse_encoders(encoders),
                     echo=lambda s: click.echo(s, err=True), **options)
    _report_run(result, out, as_json, " (interrupted: the best model so far)")


def _report_run(result, out: str, as_json: bool, interrupted: str, *extra: str) -> None:
    """The end of `fit` and `finetune`: metrics.json (--json) or the metrics, where the run is,
    and exit 130 when Ctrl-C stopped it."""
    from biofuse.pipeline.train.metrics import format_metrics

    if as_json:
        click.echo(json.dumps(result.metrics, indent=2))
    else:
        for line in [*format_metrics(result.metrics),
                     f"run written to {out}" + (interrupted if result.interrupted else ""),
                     *extra]:
            click.echo(line)
    if result.interrupted:
        sys.exit(130)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False),
              help="Where DATA's embeddings are. Default: the cache the run was trained with "
              "(config.json) while it exists, else $BIOFUSE_CACHE or the per-user cache.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Predictions file (.parquet or .csv).")
@click.option("--dataset", help="With an experiment folder: the dataset whose chosen "
              "configuration predicts (needed when the experiment has several).")
def predict(run_dir: str, data: str, cache_dir: str | None, out: str,
            dataset: str | None) -> None:
    """Score the sequences of DATA with the model trained in RUN_DIR. For a `fit` run their
    embeddings must be in the cache (run `biofuse extract` with the same encoders first); a
    `finetune` run runs its own encoder and ignores --cache. RUN_DIR may be the output folder
    of `biofuse run`: its configuration chosen on validation then predicts with every seed, and
    the seeds' predictions are averaged (the ensemble its results table scores).

    \b
    Example:
      biofuse predict runs/mil new_sequences.csv --out predictions.parquet
      biofuse predict experiment/ new_sequences.csv --dataset mrfp --out predictions.parquet
    """
    from biofuse import api

    frame = api.predict(run_dir, data, cache=cache_dir, out=out, dataset=dataset,
                        echo=lambda s: click.echo(s, err=True))
    click.echo(f"wrote {frame.height} predictions to {out}")


# ---------------------------------------------------------------------------------------------
# biofuse finetune

def _finetune_options():
    from biofuse.heads import HEADS
    from biofuse.pipeline.finetune import FinetuneOptions

    def decorate(func):
        func = method_options(HEADS, "head")(func)
        return dataclass_options(FinetuneOptions, required=("modality",))(func)

    return decorate


@main.command()
@click.argument("data", type=click.Path(dir_okay=False))
@_finetune_options()
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--json", "as_json", is_flag=True, help="Print metrics.json.")
@data_options
def finetune(spec, out: str, as_json: bool, **kwargs) -> None:
    """Train a transformer encoder end to end with a head on DATA (the optional stage beside
    `fit`): LoRA adapters (--method lora, default) or every weight (--method full). Writes a
    run directory like `fit`'s plus RUNDIR/encoder, the finetuned encoder as a model directory
    (LoRA merged; the adapter alone in RUNDIR/adapter): `biofuse extract --model RUNDIR/encoder`
    caches its embeddings, so `fit` can fuse it with frozen encoders of the other modalities.
    `biofuse predict RUNDIR DATA` runs the encoder and head on new sequences.

    Prints the epoch's progress (tokens/s, loss, time left) and a line per epoch. Ctrl-C keeps
    the best model so far (exit 130); running the same command again resumes after the last
    finished epoch. Encoders: esm2_*, nt_*, rnafm, or a directory of those architectures.

    \b
    Example:
      biofuse finetune mRFP_Expression.csv --modality protein --model esm2_t12_35M --out ft/lora
      biofuse finetune data.csv --modality dna --model ./nt-v2-100m --method full --out ft/full
      biofuse extract data.csv --modality protein --model ft/lora/encoder
    """
    from biofuse import api
    from biofuse.heads import HEADS
    from biofuse.pipeline.finetune import FinetuneOptions

    options = parsed_values(FinetuneOptions, kwargs)
    options["head_options"] = parsed_method_values(HEADS, "head", options["head"], kwargs)
    assert not kwargs, f"unparsed options {sorted(kwargs)}"
    result = api.finetune(spec, out=out, echo=lambda s: click.echo(s, err=True), **options)
    command = json.loads((result.run_dir / "config.json").read_text())["extract_command"]
    _report_run(result, out, as_json, " (interrupted: the best model so far; run the same "
                "command to continue)", f"finetuned encoder: {result.encoder_dir} (cache its "
                f"embeddings with `{command}`)")


main.add_command(cache)
for _command in (run, report, demo):
    main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    main()
