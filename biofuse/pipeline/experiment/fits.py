"""The fits of `biofuse run`, and what runs them: extraction of what the cache lacks, then every
unfinished fit of a plan, in this process or on Dask workers, each recorded (never raised) so
the rest of the grid goes on. runner.py puts the stages together; search.py runs its trials
through :func:`run_fit_task` too."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from biofuse.errors import BiofuseError, ConfigError
from biofuse.files import disk_error
from biofuse.pipeline.encoders import check_workers, cores
from biofuse.pipeline.experiment.file import Experiment
from biofuse.pipeline.experiment.plan import ExperimentPlan, PlannedFit
from biofuse.pipeline.experiment.progress import FitProgress, finished_seconds
from biofuse.pipeline.experiment.tasks import Task
from biofuse.pipeline.experiment.track import MlflowTracker

Echo = Callable[[str], None]
ERROR = "error.txt"
#: fits at a time by default: one per core, at most this many (each worker holds its tables'
#: embeddings in memory; --workers raises it). Measured on 2 cores (bench/grid_bench.py, the
#: demo): two one-thread fits side by side are 1.2x faster than one two-thread fit at a time,
#: on the demo's 18 short fits too (61 s against 70 s).
MAX_DEFAULT_WORKERS = 8
#: seconds between "still running" lines when no fit finishes
HEARTBEAT = 60.0


# ------------------------------------------------------------------------------------- stages

def extract_stage(plan: ExperimentPlan, *, scheduler: str | None, progress: bool, echo: Echo) -> None:
    from biofuse.pipeline.extract import extract

    exp = plan.experiment
    for stage in plan.stages:
        if stage.given_id or not stage.todo:
            continue
        options = exp.extract_options(stage.encoder)
        summary = extract(stage.sequences, options.request(stage.modality), plan.cache,
                          batch_tokens=options.resolved_batch_tokens(),
                          workers=options.workers, scheduler=scheduler or options.scheduler,
                          progress=progress, commit_seconds=options.commit_every,
                          encoder=stage.built)
        echo(f"extract {summary.format()}")
        if summary.interrupted:
            raise KeyboardInterrupt


_DATASETS: dict[str, Any] = {}  # per process: DataSpec json -> Dataset (a grid reuses tables)


def run_fit_task(spec: dict, options: dict, cache: str, run_dir: str, kind: str = "fit",
                 echo: Echo | None = None, trial: dict | None = None) -> dict:
    """One fit (or finetune, ``kind``), on a worker or in process. Never raises: a failure comes
    back as a record (and ``error.txt`` in the run directory) so the rest of the grid goes on.
    ``echo``: progress lines of a finetune run in process (they take minutes to hours).
    ``trial``: the fit is a search's trial (study.Reporter): it reports its validation scores,
    may be pruned (status "pruned"), and leaves the test split unscored."""
    from biofuse.options import from_dict
    from biofuse.pipeline.data import DataSpec, load_dataset
    from biofuse.pipeline.experiment.study import Pruned, Reporter
    from biofuse.pipeline.finetune import FinetuneOptions, finetune
    from biofuse.pipeline.train import FitOptions, fit

    start = time.perf_counter()
    out = Path(run_dir)
    try:
        key = json.dumps(spec, sort_keys=True)
        if key not in _DATASETS:
            _DATASETS.clear()
            _DATASETS[key] = load_dataset(from_dict(DataSpec, spec))
        hooks = {"callbacks": [Reporter(trial)] if trial else [], "score_test": trial is None}
        if kind == "finetune":
            result = finetune(_DATASETS[key], from_dict(FinetuneOptions, options), out,
                              echo=echo or (lambda s: None), **hooks)
        else:
            result = fit(_DATASETS[key], from_dict(FitOptions, options), cache, out, **hooks)
        (out / ERROR).unlink(missing_ok=True)
        status = "interrupted" if result.interrupted else "complete"
        return {"status": status, "seconds": time.perf_counter() - start,
                "metrics": result.metrics}
    except KeyboardInterrupt:
        raise
    except Pruned as exc:
        return {"status": "pruned", "seconds": time.perf_counter() - start, "epoch": exc.epoch,
                "score": exc.score}
    except BaseException as exc:  # noqa: BLE001 — recorded, the grid goes on
        machine = disk_error(exc, out)
        if machine is not None:  # a full disk, a quota, a read-only filesystem: the grid stops
            return {"status": "failed", "seconds": time.perf_counter() - start,
                    "error": f"{machine.strerror} ({machine.filename})",
                    "environment": [machine.errno, machine.strerror, machine.filename]}
        user = isinstance(exc, BiofuseError)
        message = str(exc) if user else f"internal error: {type(exc).__name__}: {exc}"
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / ERROR).write_text(message + ("" if user else "\n\n" + traceback.format_exc()))
        except OSError:
            pass
        return {"status": "failed", "seconds": time.perf_counter() - start, "error": message}


def sizing(workers: int | None, scheduler: str | None, n: int) -> tuple[int, int | None, int]:
    """Fits run at a time, torch threads per fit (None on an existing cluster: its workers'
    business) and the machine's cores, for ``n`` fits (grid fits or a search's trials)."""
    n_cores = cores()
    check_workers(workers, "cpu")  # fits train on the CPU
    n_workers = min(workers, n) if workers else max(1, min(n_cores, MAX_DEFAULT_WORKERS, n))
    return n_workers, (None if scheduler else max(1, n_cores // n_workers)), n_cores


def fit_stage(plan: ExperimentPlan, *, workers: int | None, scheduler: str | None, echo: Echo,
              stop_after: int | None = None, tracker: MlflowTracker | None = None
              ) -> list[tuple[PlannedFit, dict]]:
    """Run every unfinished fit; returns (fit, record) for each one run. ``stop_after``
    interrupts after that many fits (tests of resuming); ``tracker`` logs each finished fit."""
    todo = plan.todo
    if not todo:
        return []
    exp = plan.experiment
    n_workers, threads, n_cores = sizing(workers, scheduler, len(todo))
    records: list[tuple[PlannedFit, dict]] = []
    args = [(spec_dict(exp, f.task), f.task.resolved(threads=threads).to_dict(),
             str(plan.cache.resolve()), str(f.run_dir.resolve()), f.task.kind) for f in todo]
    if scheduler is None and n_workers == 1:
        echo(f"fits: {len(todo)} to run one after another in this process, {threads} torch "
             f"thread(s) each ({n_cores} cores; --workers N runs N at a time on Dask)")
        bar = _progress(plan, todo, 1, echo)
        for fit, a in zip(todo, args):
            if stop_after is not None and len(records) >= stop_after:
                raise KeyboardInterrupt
            with bar.watching(fit, HEARTBEAT):
                record = run_fit_task(*a, echo=lambda line, f=fit: echo(
                    f"  {f.task.dataset} {f.run_dir.name}: {line}") if f.task.kind == "finetune"
                    else None)
            records.append((fit, record))
            bar.finished(fit, record)
            _track(tracker, fit, record)
            _stop_on_the_machine(record)
        return records
    return _dask_fits(todo, args, n_workers, threads, n_cores, scheduler, echo, records, tracker,
                      _progress(plan, todo, n_workers, echo))


def _progress(plan: ExperimentPlan, todo: list[PlannedFit], parallel: int, echo: Echo
              ) -> FitProgress:
    """The progress of ``todo``, its ETA from the fits this run and earlier ones finished."""
    before = finished_seconds(f for f in plan.fits if f.finished)
    return FitProgress(len(todo), parallel, echo,
                       fits=list(todo) + [f for f in plan.fits if id(f) in before],
                       before=before)


def _track(tracker: MlflowTracker | None, fit: PlannedFit, record: dict) -> None:
    if tracker is not None and record["status"] == "complete":
        tracker.log([fit])


def _dask_fits(todo, args, n_workers, threads, n_cores, scheduler, echo, records, tracker, bar):
    try:
        from distributed import Client, wait
    except ImportError as exc:  # pragma: no cover — a dependency of biofuse
        raise ConfigError("Parallel fits need dask.distributed, which is not installed.",
                          "pip install 'dask[distributed]', or run with --workers 1.") from exc
    cluster = None
    if scheduler:
        from biofuse.pipeline.extract.distributed import connect

        client = connect(scheduler)
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        echo(f"fits: {len(todo)} on the Dask cluster at {scheduler} ({n_workers} workers; "
             "torch threads as each worker is configured)")
    else:
        echo(f"fits: {len(todo)} on a local Dask cluster, {n_workers} in parallel x {threads} "
             f"torch thread(s) each ({n_cores} cores; --workers N changes it)")
        from biofuse.pipeline.extract.distributed import local_cluster

        cluster = local_cluster(n_workers, "cpu")  # fits train on the CPU
        client = Client(cluster)
    bar.parallel = n_workers
    try:
        futures = {client.submit(run_fit_task, *a, pure=False, key=f"fit-{f.run_id[:16]}"): f
                   for f, a in zip(todo, args)}
        pending = set(futures)
        while pending:
            try:
                done, pending = wait(pending, timeout=HEARTBEAT, return_when="FIRST_COMPLETED")
            except TimeoutError:  # long fits: say the grid is alive
                bar.heartbeat(futures[f] for f in pending)
                continue
            for future in done:
                fit = futures[future]
                try:
                    record = future.result()
                except Exception as exc:  # the worker died (memory, a signal): record it
                    record = {"status": "failed", "seconds": 0.0,
                              "error": f"the Dask worker running this fit failed: "
                                       f"{type(exc).__name__}: {exc}"}
                records.append((fit, record))
                bar.finished(fit, record)
                _track(tracker, fit, record)
                if record.get("environment"):
                    client.cancel(list(pending))
                    _stop_on_the_machine(record)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return records


def _stop_on_the_machine(record: dict) -> None:
    """A fit that failed on the machine itself (full disk, quota, read-only filesystem) stops
    the grid: the next fits would fail the same way. Raised as the OSError it was, naming the
    path; finished fits are kept and the same command resumes."""
    if record.get("environment"):
        code, message, path = record["environment"]
        raise OSError(code, message, path)


def spec_dict(exp: Experiment, task: Task) -> dict:
    from dataclasses import asdict

    spec = asdict(exp.datasets[task.dataset].spec)
    spec["path"] = str(Path(spec["path"]).resolve())
    return spec


