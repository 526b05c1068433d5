"""`biofuse run`: extract what the grid needs, then run its fits in parallel, resumably.

1. Extraction: each (modality, encoder) once, over the union of the datasets' sequences; the cache
   computes only what is missing.
2. Fits: every fit is one task, named by a hash of its resolved configuration (dataset hash,
   encoder store ids, every fit option): ``OUT/runs/<dataset>/<fusion>-<head>-s<seed>-<hash>``.
   A ``[[finetune]]`` grid's runs are tasks of the same kind
   (``OUT/runs/<dataset>/finetune-<method>-<head>-s<seed>-<hash>``), without extraction.
   A finished run directory is skipped, so a killed run resumes and a grown grid runs only what
   is new. Fits run on a local Dask cluster sized to the machine, or on an existing scheduler
   whose workers see the cache and the output folder; with one worker they run in this process.
   A failing fit is recorded (``error.txt``) and the others go on.
3. Searches: each ``[[fit]]`` whose options are distributions is an Optuna study of trials
   (search.py), then its best configuration for every seed, as fits like the grid's.
4. Results: ``results.parquet/.csv/.md`` and ``runs.parquet`` (see :mod:`results`).

plan.py decides what is to do; fits.py runs fits, search.py searches; this module puts them
together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from biofuse.locks import exclusive
from biofuse.pipeline.experiment.file import Experiment
from biofuse.pipeline.experiment.fits import Echo, extract_stage, fit_stage
from biofuse.pipeline.experiment.plan import ExperimentPlan, PlannedFit, make_plan
from biofuse.pipeline.experiment.search import search_stage
from biofuse.pipeline.experiment.track import TrackSpec, make_tracker

# ----------------------------------------------------------------------------------- the run

@dataclass
class ExperimentResult:
    plan: ExperimentPlan
    results: pl.DataFrame  # one row per configuration (see results.summarise)
    runs: pl.DataFrame  # one row per fit
    ran: int
    failed: list[tuple[PlannedFit, str]]
    out: Path

    @property
    def ok(self) -> bool:
        return not self.failed


def run_experiment(exp: Experiment, *, workers: int | None = None,
                   scheduler: str | None = None, progress: bool = True,
                   echo: Echo = lambda s: None, stop_after: int | None = None,
                   track: TrackSpec | None = None) -> ExperimentResult:
    """Extract, fit, collect: the whole of `biofuse run` after validation; one at a time per
    output folder. ``track``: log every finished fit to a tracker (:mod:`track`)."""
    with exclusive(exp.out, "running an experiment",
                   "Wait for it to finish (a later run skips the fits it finished), or pass "
                   "another --out."):
        return _run(exp, workers, scheduler, progress, echo, stop_after, track)


def _run(exp: Experiment, workers, scheduler, progress, echo, stop_after,
         track: TrackSpec | None = None) -> ExperimentResult:
    from biofuse.pipeline.report import results

    (exp.out / "experiment.toml").write_text(exp.path.read_text())  # what made these results
    plan = make_plan(exp)
    for line in plan.format():
        echo(line)
    extract_stage(plan, scheduler=scheduler, progress=progress, echo=echo)
    tracker = make_tracker(track, exp.name, echo)
    if tracker is not None:  # fits finished by an earlier run: logged once
        tracker.log(f for f in plan.fits if f.finished)
    try:
        records = fit_stage(plan, workers=workers, scheduler=scheduler, echo=echo,
                            stop_after=stop_after, tracker=tracker)
        records += search_stage(plan, workers=workers, scheduler=scheduler, echo=echo,
                                tracker=tracker)
    finally:  # interrupted too: the tables hold every fit finished so far
        runs = results.runs_table(plan)
        table = results.summarise(runs)
        results.write(exp.out, exp.name, runs, table)
    failed = [(f, r["error"]) for f, r in records if r["status"] == "failed"]
    return ExperimentResult(plan, table, runs, len(records), failed, exp.out)
