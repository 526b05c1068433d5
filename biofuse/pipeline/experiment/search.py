"""`biofuse run`'s searches: for each ``[[fit]]`` whose options hold distributions (space.py),
an Optuna study of trials, then its best configuration re-run for every seed.

- A trial is a fit like any other (``fits.run_fit_task``), in
  ``OUT/search/<dataset>/<method>-<head>-<hash>/trial-NNNN``, on the same workers as the grid's
  fits (this process with one worker, a local Dask cluster, or ``--scheduler``), with the first
  seed. It reports its validation score after every epoch and is pruned when it trails the
  median of the trials before it at the same epoch (study.Reporter). Its test split is never
  scored: validation chooses.
- The study is kept in the folder (study.py), so a killed run resumes it: trials left running
  by the kill are marked failed and the same values are tried again first. ``summary.json``
  there holds every trial, the best one and the options' importances (the report draws them).
- The best trial's options then run as ordinary fits, one per seed, under ``OUT/runs/``: rows of
  the results table marked "tuned" with the number of trials, each with its test score.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from biofuse.files import write_atomic
from biofuse.pipeline.experiment import fits
from biofuse.pipeline.experiment.fits import (
    Echo,
    fit_stage,
    run_fit_task,
    sizing,
    spec_dict,
)
from biofuse.pipeline.experiment.plan import ExperimentPlan, PlannedFit, PlannedSearch, plan_fit
from biofuse.pipeline.experiment.progress import as_number, beating, duration, epoch_line
from biofuse.pipeline.experiment.study import open_study, require_optuna

SUMMARY = "summary.json"


def search_stage(plan: ExperimentPlan, *, workers: int | None, scheduler: str | None,
                 echo: Echo, tracker=None) -> list[tuple[PlannedFit, dict]]:
    """Every search of ``plan``: its trials, then its best configuration for each seed (added
    to ``plan.fits``, so the results tables hold them). Returns (fit, record) of each tuned fit
    run."""
    if not plan.searches:
        return []
    require_optuna()
    records: list[tuple[PlannedFit, dict]] = []
    for ps in plan.searches:
        best = run_search(plan, ps, workers=workers, scheduler=scheduler, echo=echo)
        task = ps.search.task
        if best is None:
            echo(f"search {task.dataset} {ps.folder.name}: no trial finished with a validation "
                 f"score, so there is no tuned configuration (the trials' errors: "
                 f"{ps.folder}/trial-*/error.txt)")
            continue
        trials = (ps.summary or {}).get("finished_trials", 0)
        tuned = [plan_fit(plan.experiment, task.with_params(best, seed=seed), ps.store_of,
                          tuned=f"{trials} trials", searched=tuple(task.space))
                 for seed in ps.search.seeds]
        plan.fits += tuned
        if tracker is not None:  # tuned by an earlier run
            tracker.log(f for f in tuned if f.finished)
        records += fit_stage(replace(plan, fits=tuned), workers=workers, scheduler=scheduler,
                             echo=echo, tracker=tracker)
    return records


def run_search(plan: ExperimentPlan, ps: PlannedSearch, *, workers: int | None,
               scheduler: str | None, echo: Echo) -> dict[str, Any] | None:
    """Run ``ps``'s study up to its number of trials; the best trial's options (path -> value),
    or None when no trial finished with a validation score."""
    require_optuna()
    from optuna.trial import TrialState

    task, settings = ps.search.task, ps.search.task.search
    ps.folder.mkdir(parents=True, exist_ok=True)
    study = open_study(ps.folder, ps.study_id, settings)
    _recover(study, echo, ps)
    distributions = {k: d.to_optuna() for k, d in task.space.items()}
    spec, cache = spec_dict(plan.experiment, task), str(plan.cache.resolve())
    pool = _Pool(workers, scheduler, settings.trials, echo)
    label = f"search {task.dataset} {ps.folder.name}"
    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

    def finished() -> list:
        return [t for t in study.get_trials(deepcopy=False, states=counted)
                if not t.user_attrs.get("orphaned")]

    if len(finished()) < settings.trials:
        echo(f"{label}: {len(finished())} of {settings.trials} trials done; searching "
             f"{', '.join(f'{k} {d.describe()}' for k, d in task.space.items())} "
             f"({settings.sampler}, pruner {settings.pruner}), {pool.parallel} at a time")
    running: dict[Any, tuple[Any, Path]] = {}
    start = time.perf_counter()
    try:
        while True:
            while len(finished()) + len(running) < settings.trials and \
                    len(running) < pool.parallel:
                trial = study.ask(fixed_distributions=distributions)
                run_dir = ps.folder / f"trial-{trial.number:04d}"
                trial.set_user_attr("run_dir", run_dir.name)
                options = task.with_params(trial.params).resolved(threads=pool.threads).to_dict()
                ref = {"folder": str(ps.folder), "study": ps.study_id,
                       "trial_id": trial._trial_id, "settings": settings.to_dict()}
                handle = pool.submit(spec, options, cache, str(run_dir), task.kind, ref)
                running[handle] = (trial, run_dir)
            if not running:
                break
            for handle in pool.wait(list(running), lambda: _heartbeat(running, echo, label)):
                trial, run_dir = running.pop(handle)
                record = pool.result(handle)
                _tell(study, trial, record, task.kind)
                _write_summary(ps, study, settings)
                _trial_line(echo, label, trial, record, study, finished(), settings,
                            len(running), time.perf_counter() - start, pool.parallel)
    finally:
        pool.close()
    summary = _write_summary(ps, study, settings, importances=True)
    best = summary.get("best")
    if best is None:
        return None
    echo(f"{label}: best trial {best['number']} of {summary['finished_trials']}, validation "
         f"{best['value']:.3f}: " + ", ".join(f"{k}={_value(v)}" for k, v in
                                               best["params"].items()))
    return best["params"]


def _recover(study, echo: Echo, ps: PlannedSearch) -> None:
    """Trials a killed run left running: marked failed (and "orphaned", so they do not count)
    and their values enqueued, so the resumed study tries them first."""
    from optuna.trial import TrialState

    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(t._trial_id, "orphaned", True)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, skip_if_exists=False)
        echo(f"search {ps.search.task.dataset} {ps.folder.name}: trial {t.number} was "
             "interrupted; its values run again")


def _tell(study, trial, record: dict, kind: str) -> None:
    from optuna.trial import TrialState

    trial.set_user_attr("seconds", round(float(record.get("seconds") or 0.0), 3))
    status = record["status"]
    if status == "interrupted":
        raise KeyboardInterrupt  # the trial stays running: a resumed run tries it again
    if status == "pruned":
        trial.set_user_attr("pruned_at_epoch", record["epoch"])
        study.tell(trial, state=TrialState.PRUNED)
        return
    if status == "failed":
        trial.set_user_attr("error", str(record["error"]).splitlines()[0][:500])
        study.tell(trial, state=TrialState.FAIL)
        return
    metrics = record["metrics"]
    key = "accuracy" if metrics.get("task") == "classification" else "spearman"
    value = as_number((metrics.get("val") or {}).get(key))
    trial.set_user_attr("epochs", metrics.get("epochs"))
    if value is None:  # a NaN validation score is a result: reported, never chosen
        trial.set_user_attr("error", f"validation {key} undefined")
        study.tell(trial, state=TrialState.FAIL)
        return
    study.tell(trial, value)


def _trial_line(echo, label, trial, record, study, finished, settings, running, elapsed,
                parallel) -> None:
    from optuna.trial import TrialState

    status = record["status"]
    if status == "pruned":
        what = f"pruned at epoch {record.get('epoch')}"
    elif status == "failed":
        what = "FAILED: " + (str(record.get("error") or "").splitlines() or ["?"])[0][:200]
    else:
        value = study.trials[trial.number].value
        what = f"val {value:.3f}" if value is not None else "val undefined (not chosen)"
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value, default=None)
    pruned = sum(t.state == TrialState.PRUNED for t in finished)
    failed = sum(t.state == TrialState.FAIL for t in finished)
    left = settings.trials - len(finished)
    # a trial's own seconds (pruned ones are short), the trials left shared by the workers
    took = [t.user_attrs.get("seconds") or 0.0 for t in finished] or [elapsed]
    eta = sum(took) / len(took) * left / max(1, min(parallel, left))
    echo(f"{label}: trial {trial.number} {what}, {record.get('seconds', 0):.0f} s | "
         f"{len(finished)} of {settings.trials} trials done ({pruned} pruned, {failed} failed)"
         + (f", best {best.value:.3f} (trial {best.number})" if best else "")
         + (f", ETA {duration(eta)}" if left else ""))


def _heartbeat(running: dict, echo: Echo, label: str) -> None:
    for trial, run_dir in running.values():
        line = epoch_line(run_dir / "train_log.csv", 0.0)
        if line:
            echo(f"  {label} trial {trial.number}: {line}")


def _write_summary(ps: PlannedSearch, study, settings, importances: bool = False
                   ) -> dict[str, Any]:
    """summary.json: every trial (state, value, options, seconds), the best one, counts, and
    with ``importances`` Optuna's importance of each option (fANOVA) when enough trials
    finished."""
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("orphaned")]
    done = [t for t in trials if t.state.is_finished()]
    complete = [t for t in done if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value, default=None)
    old = ps.summary or {}
    summary = {"study": ps.study_id, "dataset": ps.search.task.dataset,
               "method": ps.search.task.method, "head": ps.search.task.options["head"],
               "space": {k: d.describe() for k, d in ps.search.task.space.items()},
               "settings": settings.to_dict(), "seeds": ps.search.seeds,
               "finished_trials": len(done), "complete": len(complete),
               "pruned": sum(t.state == TrialState.PRUNED for t in done),
               "failed": sum(t.state == TrialState.FAIL for t in done),
               "trial_seconds": round(sum(t.user_attrs.get("seconds", 0.0) for t in done), 1),
               "best": ({"number": best.number, "value": best.value, "params": best.params,
                         "run_dir": best.user_attrs.get("run_dir")} if best else None),
               "trials": [{"number": t.number, "state": t.state.name, "value": t.value,
                           "params": t.params, "seconds": t.user_attrs.get("seconds"),
                           "pruned_at_epoch": t.user_attrs.get("pruned_at_epoch"),
                           "error": t.user_attrs.get("error"),
                           "run_dir": t.user_attrs.get("run_dir")} for t in done],
               "importances": old.get("importances")}
    if importances and len(complete) >= 3 and len(ps.search.task.space) >= 1:
        summary["importances"] = _importances(study)
    write_atomic(ps.folder / SUMMARY,
                 lambda f: f.write(json.dumps(summary, indent=2, default=str).encode()))
    return summary


def _importances(study) -> dict[str, float] | None:
    import optuna

    try:
        values = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError):  # too few or identical trials
        return None
    return {k: round(float(v), 4) for k, v in values.items() if math.isfinite(v)}


# ------------------------------------------------------------------------------ where trials run

class _Pool:
    """Where a search's trials run: this process (one worker), or a Dask cluster (local, or
    ``scheduler``), as the grid's fits do (fits.fit_stage)."""

    def __init__(self, workers: int | None, scheduler: str | None, trials: int, echo: Echo):
        self.echo = echo
        self.parallel, self.threads, _ = sizing(workers, scheduler, trials)
        self.client = self.cluster = None
        self.done: dict[int, dict] = {}
        if scheduler is None and self.parallel == 1:
            return
        from distributed import Client

        if scheduler:
            from biofuse.pipeline.extract.distributed import connect

            self.client = connect(scheduler)
            self.parallel = max(1, len(self.client.scheduler_info().get("workers", {})))
        else:
            from biofuse.pipeline.extract.distributed import local_cluster

            self.cluster = local_cluster(self.parallel, "cpu")
            self.client = Client(self.cluster)

    def submit(self, *args) -> Any:
        if self.client is None:  # in this process: run now, with heartbeats
            key = len(self.done)
            self.done[key] = _watched(args, self.echo)
            return key
        return self.client.submit(run_fit_task, *args[:5], None, args[5], pure=False)

    def wait(self, handles: list, heartbeat) -> list:
        if self.client is None:
            return handles
        from distributed import wait

        while True:
            try:
                done, _ = wait(handles, timeout=fits.HEARTBEAT, return_when="FIRST_COMPLETED")
                return list(done)
            except TimeoutError:
                heartbeat()

    def result(self, handle) -> dict:
        if self.client is None:
            return self.done.pop(handle)
        try:
            return handle.result()
        except Exception as exc:  # the worker died (memory, a signal): a failed trial
            return {"status": "failed", "seconds": 0.0,
                    "error": f"the Dask worker running this trial failed: "
                             f"{type(exc).__name__}: {exc}"}

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _watched(args: tuple, echo: Echo) -> dict:
    """A trial in this process, with a heartbeat line every HEARTBEAT seconds."""
    run_dir = Path(args[3])

    def beat() -> None:
        line = epoch_line(run_dir / "train_log.csv", 0.0)
        if line:
            echo(f"  {run_dir.parent.name} {run_dir.name}: {line}")

    with beating(fits.HEARTBEAT, beat):
        return run_fit_task(*args[:5], None, args[5])


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
