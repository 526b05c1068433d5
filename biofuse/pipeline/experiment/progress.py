"""The progress lines of `biofuse run`'s fits: one line per finished fit (its scores, the counts
and an ETA), and while fits run, a heartbeat that says where each running fit is.

A running fit is read from its run directory's ``train_log.csv`` (a row per epoch, appended
as it trains), so the heartbeat works the same for fits in this process, on a local Dask
cluster and on a remote one whose workers write to the shared output folder.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biofuse.pipeline.train.rundir import LOG, LOG_COLUMNS

Echo = Callable[[str], None]
#: seconds of slack on a log's modification time (filesystems that keep whole seconds)
MTIME_SLACK = 2.0


@dataclass
class FitProgress:
    """fits done / running / failed / left and the ETA, on stderr.

    With ``fits`` (the grid's fits), the ETA is the sum of what each fit still to finish should
    take, divided by the fits run at a time: a fit's time is estimated from the finished fits
    most like it (its other seeds; else the same dataset and fusion; else the same dataset;
    else every finished fit). A grid mixes fits of 30 s and of an hour (an attention fusion on
    long rows), so finished fits per second would be off by that ratio. ``before`` holds the
    seconds of the fits an earlier run finished (their metrics.json), so a resumed grid has an
    ETA from its first heartbeat; the work the running fits have done so far is taken off it.
    Without ``fits``, elapsed time per finished fit."""

    total: int
    parallel: int
    echo: Echo
    fits: list[Any] = field(default_factory=list)
    done: int = 0
    failed: int = 0
    interrupted: int = 0
    start: float = field(default_factory=time.perf_counter)
    wall_start: float = field(default_factory=time.time)
    before: dict[int, float] = field(default_factory=dict)  # id(fit) -> seconds, earlier runs
    took: dict[int, float] = field(init=False)  # the same, with this run's finished fits
    spent: float = field(init=False, default=0.0)  # seconds of this run's finished fits

    def __post_init__(self) -> None:
        self.took = dict(self.before)

    def eta(self, left: int) -> float | None:
        """Seconds until the last fit finishes (None before anything is known)."""
        elapsed = time.perf_counter() - self.start
        if not self.fits or not self.took:
            return elapsed / (self.done + self.failed) * left if self.done + self.failed \
                else None
        ahead = [f for f in self.fits if id(f) not in self.took]
        parallel = max(1, min(self.parallel, len(ahead)))
        # what the running fits (the first ones ahead: fits start in order) have done so far
        in_flight = min(max(0.0, elapsed * parallel - self.spent),
                        sum(map(self.expected, ahead[:parallel])))
        return (sum(map(self.expected, ahead)) - in_flight) / parallel

    def expected(self, fit: Any) -> float:
        """Seconds ``fit`` should take, from the finished fits most like it."""
        for same in (_config, _fusion, _dataset, lambda f: None):
            key = same(fit)
            like = [self.took[id(f)] for f in self.fits if id(f) in self.took and same(f) == key]
            if like:
                return sum(like) / len(like)
        return 0.0

    def finished(self, fit: Any, record: dict) -> None:
        self.took[id(fit)] = float(record.get("seconds") or 0.0)
        self.spent += self.took[id(fit)]
        if record["status"] == "failed":
            self.failed += 1
            what = f"FAILED: {record['error'].splitlines()[0]}"
        elif record["status"] == "interrupted":  # Ctrl-C: kept as it was, runs again next time
            self.interrupted += 1
            what = (f"interrupted after {record['seconds']:.0f} s (its best model so far is "
                    "kept; the next run trains it again)")
        else:
            self.done += 1
            m = record["metrics"]
            key = "accuracy" if m.get("task") == "classification" else "spearman"
            what = (f"val {key} {_fmt(m.get('val', {}).get(key))}, test "
                    f"{_fmt(m.get('test', {}).get(key))}, {record['seconds']:.0f} s")
        left = self.total - self.done - self.failed - self.interrupted
        running = min(self.parallel, left)
        elapsed = time.perf_counter() - self.start
        eta = self.eta(left) if left else 0.0
        self.echo(f"fit {fit.task.dataset} {fit.run_dir.name}: {what} | fits {self.done} done, "
                  f"{running} running, {self.failed} failed, "
                  + (f"{self.interrupted} interrupted, " if self.interrupted else "")
                  + f"{left} left"
                  + (f", {duration(elapsed)} in all" if not left
                     else f", ETA {duration(eta)}" if eta is not None else ""))

    def heartbeat(self, unfinished: Iterable[Any] = ()) -> None:
        """The counts, then a line per fit of ``unfinished`` that has trained an epoch since
        this grid started (the others are queued): its last epoch, validation score and pace."""
        left = self.total - self.done - self.failed
        elapsed = time.perf_counter() - self.start
        eta = self.eta(left)
        self.echo(f"fits {self.done} done, {min(self.parallel, left)} running, {self.failed} "
                  f"failed, {left} left; {duration(elapsed)} so far"
                  + (f", ETA {duration(eta)}" if eta is not None else ""))
        for fit in unfinished:
            line = epoch_line(Path(fit.run_dir) / LOG, self.wall_start)
            if line:
                self.echo(f"  {fit.task.dataset} {Path(fit.run_dir).name}: {line}")

    def watching(self, fit: Any, every: float):
        """Heartbeats every ``every`` seconds while ``fit`` runs in this process."""
        return beating(every, lambda: self.heartbeat([fit]))


@contextmanager
def beating(seconds: float, beat: Callable[[], None]) -> Iterator[None]:
    """Call ``beat`` every ``seconds`` from a background thread while the block runs (the
    heartbeat of work done in this process)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(seconds):
            beat()

    thread = threading.Thread(target=loop, name="biofuse-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def finished_seconds(fits: Iterable[Any]) -> dict[int, float]:
    """id(fit) -> seconds, for the fits of ``fits`` whose run directory holds a readable
    metrics.json with the time it took (FitProgress's ``before``)."""
    out = {}
    for fit in fits:
        try:
            seconds = json.loads((Path(fit.run_dir) / "metrics.json").read_text())["seconds"]
            out[id(fit)] = float(seconds)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def _config(fit: Any) -> Any:
    return getattr(fit, "config_id", None)


def _dataset(fit: Any) -> Any:
    return getattr(fit.task, "dataset", None)


def _fusion(fit: Any) -> Any:
    options = getattr(fit.task, "options", {}) or {}
    return (_dataset(fit), options.get("fusion"), options.get("head"))


def epoch_line(log: Path, since: float) -> str | None:
    """Where the fit writing ``log`` is: its last epoch (and tags), validation score, best so far
    and seconds per epoch; None when it has not finished an epoch since ``since`` (a queued fit,
    or an earlier run's log)."""
    try:
        if log.stat().st_mtime < since - MTIME_SLACK:
            return None
        with log.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("seconds")]  # a half-written row
    except (OSError, csv.Error):
        return None
    if not rows:
        return None
    last = rows[-1]
    tags = {k: v for k, v in last.items() if k not in LOG_COLUMNS and k is not None}
    same = [r for r in rows if all(r.get(k) == v for k, v in tags.items())]
    best = max((v for r in same if (v := as_number(r.get("val_selection"))) is not None),
               default=None)
    what = "".join(f", {k} {v}" for k, v in tags.items())
    return (f"epoch {last['epoch']}{what}: val {_fmt(as_number(last.get('val_score')))}, best "
            f"{_fmt(best)}, {as_number(last.get('seconds')) or 0:.0f} s/epoch")


def as_number(v) -> float | None:
    """A log or metrics value as a float; None when it is not a number or is NaN."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if x != x else x


def _fmt(v) -> str:
    return "undefined" if v is None else f"{v:.3f}"


def duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else (
        f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s")
