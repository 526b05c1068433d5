"""Optional experiment tracking: every fit of `biofuse run` as one MLflow run (``--track``).

The tracker reads what a fit wrote to its run directory once it has finished (config.json,
train_log.csv, metrics.json, figures), in the process that runs the grid: it works the same for
fits in process and on local or remote Dask workers, and no fit waits on it or depends on it. A
tracker that fails (a full disk, a bad URI, a store it cannot open) is a warning; the fit is
saved in its run directory all the same. A run's fits already finished (a resumed or a grown
grid) are logged once too, so ``--track`` on a finished experiment fills the tracker, and each
fit is logged once: the tracker's runs carry the fit's run id (``biofuse.run_id``) and a fit
already there is skipped. Without ``--track`` nothing is imported or written.

One MLflow run per fit: the fit's options as params (``fit.lr``, ``fit.fusion_options.dim``,
...), each epoch's train loss, validation score and learning rate as metrics by epoch (a MIL
fit's entropy-weight candidates as ``val_score/entropy_weight_0.01``), the validation and test
metrics (``val_spearman``, ``test_spearman``, ...) and the best epoch, config.json, metrics.json,
train_log.csv and the figures as artifacts, and the experiment, dataset, fusion, head, seed and
group as tags, so ``mlflow ui`` lists, filters and compares every fit.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from biofuse.errors import ConfigError
from biofuse.pipeline.experiment.progress import as_number

Echo = Callable[[str], None]
#: ``--track mlflow``: a SQLite store in the current directory, artifacts under ./mlruns; it is
#: what ``mlflow ui`` opens when started there (MLflow 3 refuses a plain ./mlruns file store
#: unless told otherwise)
DEFAULT_URI = "sqlite:///mlflow.db"
KINDS = ("mlflow",)
ARTIFACTS = ("config.json", "metrics.json", "train_log.csv")


@dataclass(frozen=True)
class TrackSpec:
    kind: str
    uri: str


def parse_track(value: str | None) -> TrackSpec | None:
    """``mlflow`` or ``mlflow:URI`` -> a spec; None -> None. Checked before any work."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"--track {value!r} is not a tracker.",
                          "Use --track mlflow (a local store) or --track mlflow:URI.")
    kind, _, uri = value.strip().partition(":")
    if kind not in KINDS:
        raise ConfigError(f"--track {value!r}: biofuse tracks fits with {', '.join(KINDS)} only.",
                          "Use --track mlflow (a local store) or --track mlflow:URI, e.g. "
                          "--track mlflow:sqlite:///runs.db or --track mlflow:http://host:5000.")
    try:
        import mlflow  # noqa: F401
    except ImportError as exc:
        raise ConfigError("--track mlflow needs MLflow, which is not installed.",
                          "pip install 'biofuse-ml[mlflow]' (MLflow's tracking client and "
                          "SQLite support), or leave out --track.") from exc
    return TrackSpec(kind, uri or DEFAULT_URI)


class MlflowTracker:
    """Logs finished fits to the MLflow experiment named after the biofuse experiment."""

    def __init__(self, spec: TrackSpec, experiment: str, echo: Echo):
        self.spec, self.experiment, self.echo = spec, experiment, echo
        self.client: Any = None
        self.experiment_id: str | None = None
        self.logged: set[str] = set()
        self.failures = 0

    def _open(self) -> None:
        import logging

        from mlflow import MlflowClient

        for name in ("mlflow", "alembic"):  # schema set-up chatter between the grid's lines
            logging.getLogger(name).setLevel(logging.WARNING)
        uri = self.spec.uri
        if "://" not in uri or uri.startswith("file:"):  # a folder the user asked for by name
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(self.experiment)
        self.experiment_id = (found.experiment_id if found is not None
                              else self.client.create_experiment(self.experiment))
        for run in self._runs():
            if "biofuse.run_id" in run.data.tags:
                self.logged.add(run.data.tags["biofuse.run_id"])

    def _runs(self) -> Iterable[Any]:
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], max_results=1000,
                                           page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def log(self, fits: Iterable[Any]) -> None:
        """Log each of ``fits`` (planned fits whose run directories are finished) not yet in
        the tracker; a failure is a warning and the grid goes on."""
        for fit in fits:
            try:
                if self.client is None:
                    self._open()
                if fit.run_id not in self.logged:
                    self._log_one(fit)
                    self.logged.add(fit.run_id)
            except Exception as exc:  # noqa: BLE001 — tracking never costs a fit
                self.failures += 1
                if self.failures <= 3:
                    self.echo(f"warning: could not log {fit.task.dataset} {Path(fit.run_dir).name} "
                              f"to MLflow at {self.spec.uri}: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}. The fit itself "
                              f"is saved in {fit.run_dir}; `biofuse run` with the same --track "
                              "logs it later.")
                if self.client is None:
                    return  # the store cannot be opened: one warning per grid is enough

    def _log_one(self, fit: Any) -> None:
        from mlflow.entities import Metric, Param

        run_dir = Path(fit.run_dir)
        config = _json(run_dir / "config.json")
        metrics = _json(run_dir / "metrics.json")
        options = config.get("fit") or config.get("finetune") or {}
        tags = {"biofuse.experiment": self.experiment, "biofuse.dataset": fit.task.dataset,
                "biofuse.group": fit.task.group, "biofuse.kind": fit.task.kind,
                "biofuse.run_id": fit.run_id, "biofuse.config_id": fit.config_id,
                "biofuse.run_dir": str(run_dir.resolve()),
                "biofuse.status": str(config.get("status", "")),
                "biofuse.version": str(config.get("biofuse_version", "")),
                "fusion": str(options.get("fusion", options.get("method", ""))),
                "head": str(options.get("head", "")), "seed": str(options.get("seed", ""))}
        if getattr(fit, "tuned", None):  # a search's best configuration, run for this seed
            tags |= {"biofuse.tuned": fit.tuned, "biofuse.searched": ",".join(fit.searched)}
        run = self.client.create_run(self.experiment_id, run_name=run_dir.name, tags=tags)
        rid = run.info.run_id
        params = [Param(_name(k), v[:6000]) for k, v in _flat("fit", options)]
        params.append(Param("dataset_hash", str(config.get("dataset_hash", ""))))
        stamp = int(run.info.start_time)
        values = [Metric(_name(k), v, stamp, step)
                  for k, v, step in _epochs(run_dir / "train_log.csv")]
        values += [Metric(_name(k), v, stamp, 0) for k, v in _final(metrics)]
        for i in range(0, max(len(params), 1), 100):  # MLflow's batch limits
            self.client.log_batch(rid, params=params[i:i + 100])
        for i in range(0, len(values), 1000):
            self.client.log_batch(rid, metrics=values[i:i + 1000])
        for path in sorted(run_dir.iterdir()):
            if path.is_file() and not path.is_symlink() and (
                    path.name in ARTIFACTS or path.suffix == ".png"):
                self.client.log_artifact(rid, str(path))
        self.client.set_tag(rid, "biofuse.logged", "complete")
        self.client.set_terminated(rid, "FINISHED" if config.get("status") == "complete"
                                   else "FAILED")


def make_tracker(spec: TrackSpec | None, experiment: str, echo: Echo) -> MlflowTracker | None:
    return None if spec is None else MlflowTracker(spec, experiment, echo)


def _name(key: str) -> str:
    """A param or metric name MLflow accepts (letters, digits, _ - . space : /)."""
    return re.sub(r"[^\w\-. :/]", "_", key)[:250]


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _flat(prefix: str, value: Any) -> Iterable[tuple[str, str]]:
    """Nested options as ``prefix.key`` -> text (lists joined by commas)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flat(f"{prefix}.{k}", v)
    elif isinstance(value, (list, tuple)):
        yield prefix, ",".join(map(str, value))
    else:
        yield prefix, str(value)


def _number(v: Any) -> float | None:
    x = as_number(v)
    return x if x is not None and math.isfinite(x) else None


def _epochs(log: Path) -> Iterable[tuple[str, float, int]]:
    """Per-epoch metrics of train_log.csv: (name, value, epoch); a candidate's (MIL's entropy
    weight) under its own names, since each restarts at epoch 1."""
    from biofuse.pipeline.train.rundir import LOG_COLUMNS

    try:
        with log.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error):
        return
    for row in rows:
        epoch = _number(row.get("epoch"))
        if epoch is None:
            continue
        tags = "".join(f"/{k}_{v}" for k, v in row.items()
                       if k not in LOG_COLUMNS and k is not None)
        for name in ("train_loss", "val_score", "val_selection", "lr", "seconds"):
            value = _number(row.get(name))
            if value is not None:
                yield f"{name}{tags}", value, int(epoch)


def _final(metrics: dict) -> Iterable[tuple[str, float]]:
    """val_* / test_* metrics (mean over targets, and per target when there are several), the
    best epoch. An undefined metric (NaN, null) is left out: MLflow shows it as missing."""
    for split in ("val", "test"):
        block = metrics.get(split)
        if not isinstance(block, dict):
            continue
        for name, value in block.items():
            if (v := _number(value)) is not None and not isinstance(value, bool):
                yield f"{split}_{name}", v
        targets = block.get("per_target")
        if isinstance(targets, dict) and len(targets) > 1:
            for target, values in targets.items():
                for name, value in (values.items() if isinstance(values, dict) else ()):
                    if name != "n" and (v := _number(value)) is not None:
                        yield f"{split}_{name}/{target}", v
    if (best := _number(metrics.get("best_epoch"))) is not None:
        yield "best_epoch", best
