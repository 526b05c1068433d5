"""Scoring new sequences with what an experiment found: ``biofuse predict RUN DATA`` where RUN is
one run directory (a fit, a probe or a finetune), or an experiment's output folder, whose
configuration chosen on validation predicts with every seed and the seeds are averaged (the
seed ensemble the results tables score)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from biofuse.errors import ConfigError
from biofuse.pipeline.report.ensembles import average_predictions
from biofuse.pipeline.report.results import read_runs_table, summarise
from biofuse.pipeline.train.predict import check_output, write_predictions
from biofuse.pipeline.train.rundir import RunDir


def predict_run(run_dir: Path, data: Path, cache=None, out: Path | None = None) -> pl.DataFrame:
    """One run's predictions for every row of ``data``, whichever stage made the run."""
    if RunDir(run_dir).read_config().get("kind") == "finetune":
        from biofuse.pipeline.finetune.predict import predict as score_finetuned

        return score_finetuned(run_dir, data, out)
    from biofuse.pipeline.train.predict import predict as score_fitted

    return score_fitted(run_dir, data, cache, out)


def predict_chosen(folder: Path, data: Path, cache=None, out: Path | None = None,
                   dataset: str | None = None, echo=lambda s: None) -> pl.DataFrame:
    """The seed ensemble of the configuration chosen on validation for ``dataset`` (which may be
    left out when the experiment has one)."""
    out = check_output(out)
    table = summarise(read_runs_table(folder))
    names = list(dict.fromkeys(table["dataset"].to_list())) if not table.is_empty() else []
    if dataset is None and len(names) == 1:
        dataset = names[0]
    if dataset not in names:
        raise ConfigError(f"{folder} holds results for {', '.join(names) or 'no dataset'}"
                          + (f", not {dataset!r}" if dataset else "") + "; the chosen "
                          "configuration is chosen per dataset.",
                          "Name one with --dataset NAME (docs/experiments.md).")
    chosen = table.filter((pl.col("dataset") == dataset) & pl.col("chosen"))
    if chosen.is_empty():
        raise ConfigError(f"No configuration of {dataset} in {folder} has finished every seed, so "
                          "none is chosen yet.", "Finish the grid with `biofuse run` first, or "
                          "predict with one run directory.")
    c = chosen.row(0, named=True)
    runs = read_runs_table(folder).filter((pl.col("config_id") == c["config_id"])
                                          & (pl.col("status") == "complete"))
    run_dirs = [Path(d) for d in runs["run_dir"].to_list()]
    echo(f"{dataset}: the chosen configuration, {c['fusion']} ({c['modalities']}; "
         f"{c['encoders']}), {len(run_dirs)} seed(s) averaged")
    frames = [predict_run(d, data, cache) for d in run_dirs]
    return write_predictions(average_predictions(frames), out)
