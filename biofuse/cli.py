"""The `biofuse` command line: parse options, call the library, turn user errors into clean exits.

Exit codes: 0 success, 2 a user or data error (one paragraph, no traceback), 1 an internal error.
``biofuse --debug ...`` shows the traceback of any error.
"""

from __future__ import annotations

import functools
import json
import sys
import textwrap

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
    click.echo(textwrap.fill(f"error: {message}", width=100, break_on_hyphens=False,
                             break_long_words=False), err=True)
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
# biofuse demo

@main.command()
@click.option("--data", "data_path", type=click.Path(dir_okay=False),
              help="Run on this table instead of the shipped synthetic example.")
def demo(data_path: str | None) -> None:
    """Run biofuse end to end on a small shipped dataset (no download, CPU only).

    Today the demo reads and validates the dataset; it grows with biofuse (extract, fit).

    \b
    Example:
      biofuse demo
      biofuse demo --data mRFP_Expression.csv
    """
    from biofuse.examples import EXAMPLE_CSV
    from biofuse.pipeline.data import DataSpec, load_dataset
    from biofuse.pipeline.inspect import format_report

    spec = (DataSpec(path=str(data_path)) if data_path
            else DataSpec(path=str(EXAMPLE_CSV), label_cols=("expression",)))
    ds = load_dataset(spec)
    click.echo(format_report(ds.report))


if __name__ == "__main__":  # pragma: no cover
    main()
