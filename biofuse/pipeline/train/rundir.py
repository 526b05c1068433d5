"""The run directory: everything needed to reproduce, audit and reuse one trained model.

```
RUNDIR/config.json          biofuse version, data spec, dataset hash, fit options, model config,
                            encoder fingerprints, targets; "status": running | complete | interrupted
RUNDIR/train_log.csv        one row per epoch, appended while training runs
RUNDIR/metrics.json         validation and test metrics, the chosen hyper-parameters
RUNDIR/predictions.parquet  id, split, labels and predictions for every row
RUNDIR/attention.parquet    per-row modality weights (MIL)
RUNDIR/model.pt             the model's state dict (loaded with weights_only=True); for a
                            finetune run, the head's
```

A finetune run (config "kind": "finetune") adds:

```
RUNDIR/encoder/             the finetuned encoder (LoRA merged): a model directory that
                            `extract --model RUNDIR/encoder` reads like any other
RUNDIR/adapter/             the un-merged LoRA adapter (peft's format), for LoRA runs
RUNDIR/checkpoint.pt        while unfinished: the state after the last epoch, to resume from
```

``fit`` and ``finetune`` write it, ``predict`` reads it; nothing else knows the layout.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import torch

from biofuse.cache import default_cache_dir
from biofuse.errors import BiofuseError, ConfigError
from biofuse.files import Record, read_text, regular_file, write_atomic, write_bytes_atomic
from biofuse.fusion.model import FusionModel, ModelConfig
from biofuse.heads import HEADS
from biofuse.heads.probes import load_probe
from biofuse.options import canonical_names
from biofuse.pipeline.train.options import FitOptions
from biofuse.pipeline.train.targets import Targets
from biofuse.version import __version__

CONFIG, METRICS, LOG, MODEL = "config.json", "metrics.json", "train_log.csv", "model.pt"
PREDICTIONS, ATTENTION = "predictions.parquet", "attention.parquet"
ENCODER, ADAPTER, CHECKPOINT = "encoder", "adapter", "checkpoint.pt"
#: train_log.csv's own columns; any other column is a tag (what was being trained, e.g. MIL's
#: entropy weight)
LOG_COLUMNS = ("epoch", "train_loss", "val_score", "val_selection", "lr", "seconds", "tokens")


def run_cache(config: dict, cache_root) -> Path:
    """Where a fit run's embeddings are looked up: ``cache_root`` when given, else the cache the
    run was trained with (its config.json's ``cache``) while it exists, else the default."""
    if cache_root is not None:
        return Path(cache_root)
    trained = config.get("cache")
    if trained and Path(trained).is_dir():
        return Path(trained)
    return default_cache_dir()


def canonical_config(config: dict) -> dict:
    """A run's config.json with options renamed since it was written under their current names
    (a 0.5 fit's ``precision`` is ``dtype``)."""
    if isinstance(config.get("fit"), dict):
        config = {**config, "fit": canonical_names(FitOptions, config["fit"], warn=False)}
    return config


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def log_path(self) -> Path:
        return self.path / LOG

    @property
    def encoder_dir(self) -> Path:
        return self.path / ENCODER

    @property
    def adapter_dir(self) -> Path:
        return self.path / ADAPTER

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    def trim_log(self, epochs: int) -> None:
        """Keep the log's rows of the first ``epochs`` epochs (a resumed run rewrites the rest)."""
        if not self.log_path.is_file():
            return
        lines = self.log_path.read_text().splitlines(keepends=True)
        self.log_path.write_text("".join(lines[:1 + epochs]))

    def check_writable(self) -> None:
        """Fail before any work if the run directory could not be written: it is a file, or
        neither it nor its nearest existing parent is a writable directory."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"--out {self.path} is a file, not a run directory.",
                              "Pass a new or existing directory.")
        probe = self.path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not (probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)):
            raise ConfigError(f"The run directory {self.path} cannot be written ({probe} is not "
                              "a writable directory).",
                              "Pass an --out directory on a writable filesystem.")

    def prepare(self) -> None:
        """Create the directory; an earlier run's log is replaced, so the log always describes
        this run."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.log_path.unlink(missing_ok=True)
        except OSError as exc:
            raise ConfigError(f"The run directory {self.path} cannot be written ({exc.strerror}).",
                              "Pass an --out directory on a writable filesystem.") from None

    def write_config(self, config: dict[str, Any], status: str) -> None:
        doc = {"biofuse_version": __version__, "status": status, **config}
        _write_json(self.path / CONFIG, doc)

    def finish(self, config: dict[str, Any], status: str, state: dict[str, torch.Tensor],
               metrics: dict, predictions: pl.DataFrame,
               attention: pl.DataFrame | None = None) -> None:
        """Write the run's results (``state``: the model's tensors, as model.pt), each file
        whole or not at all, and then, last, config.json with ``status``: a run killed or out of
        disk while writing keeps status "running", so the next `biofuse run` trains it again
        instead of calling it finished."""
        _write_json(self.path / METRICS, metrics)
        write_atomic(self.path / MODEL, lambda f: torch.save(state, f))
        write_atomic(self.path / PREDICTIONS, predictions.write_parquet)
        if attention is not None:
            write_atomic(self.path / ATTENTION, attention.write_parquet)
        self.write_config(config, status)

    def problems(self) -> list[str]:
        """Why this is not a complete run directory ([] when it is): config.json with status
        complete, and every file a finished run has, readable (the model's weights load)."""
        try:
            config = json.loads(read_text(self.path / CONFIG, "run record"))
        except BiofuseError as exc:
            return [exc.problem]
        except ValueError:
            return [f"{CONFIG} is not valid JSON"]
        if not isinstance(config, dict) or config.get("status") != "complete":
            status = config.get("status") if isinstance(config, dict) else None
            return [f"its status is {status!r}, not 'complete'"]
        out = []
        try:
            json.loads(read_text(self.path / METRICS, "metrics file"))
        except (BiofuseError, ValueError):
            out.append(f"{METRICS} is missing or not valid JSON")
        try:
            pl.read_parquet_schema(regular_file(self.path / PREDICTIONS, "predictions"))
        except Exception:  # missing, truncated, not Parquet
            out.append(f"{PREDICTIONS} is missing or unreadable")
        try:
            torch.load(regular_file(self.path / MODEL, "model"), weights_only=True)
        except Exception:
            out.append(f"{MODEL} is missing or cannot be loaded")
        if config.get("kind") == "finetune" and not (self.encoder_dir / "config.json").is_file():
            out.append(f"{ENCODER}/ holds no finetuned encoder")
        return out

    def read_config(self) -> dict[str, Any]:
        """config.json of a finished (or interrupted) run, checked field by field: a damaged or
        hand-edited record is a ConfigError naming the file and the field."""
        config_path, model_path = self.path / CONFIG, self.path / MODEL
        if not config_path.is_file() or not model_path.is_file():
            raise ConfigError(f"{self.path} is not a biofuse run directory (no {CONFIG}/{MODEL}).",
                              "Pass the --out directory of a finished `biofuse fit` or "
                              "`biofuse finetune`.")
        record = Record.read(config_path, REWRITTEN)
        record = Record(canonical_config(record.doc), config_path, REWRITTEN)
        _check_run_record(record)
        return record.doc

    def load_weights(self) -> dict[str, torch.Tensor]:
        """model.pt as plain tensors (never unpickling code)."""
        try:
            return torch.load(self.path / MODEL, weights_only=True)
        except Exception as exc:  # pickles, truncation
            raise ConfigError(f"{self.path / MODEL} cannot be loaded as biofuse model weights "
                              f"({type(exc).__name__}).",
                              "biofuse loads only plain tensor state dicts written by `biofuse "
                              "fit` or `finetune`; train the model again.") from None

    def load(self) -> SavedRun:
        """The saved run of `fit`: its config, targets and model (weights loaded safely)."""
        config_path, model_path = self.path / CONFIG, self.path / MODEL
        config = self.read_config()
        if config.get("kind", "fit") != "fit":
            raise ConfigError(f"{self.path} is a {config['kind']} run, not a fit run.",
                              "Use `biofuse predict`, which reads either kind.")
        try:
            model_cfg = ModelConfig.from_dict(config["model"])
            if HEADS[model_cfg.head].kind == "probe":  # a scikit-learn probe's arrays
                probe = load_probe(model_cfg.head, model_cfg.n_outputs, model_cfg.head_options,
                                   torch.load(model_path, weights_only=True))
                return SavedRun(self.path, config, model_cfg, Targets(**config["targets"]),
                                probe)
            model = FusionModel(model_cfg)
        except ConfigError as exc:
            raise ConfigError(f"{config_path}: model: {exc.problem}", REWRITTEN) from None
        except Exception as exc:  # a config that passes the checks but builds no model
            raise ConfigError(f"{config_path}: model cannot be built from it "
                              f"({type(exc).__name__}: {exc}).", REWRITTEN) from None
        try:
            model.load_state_dict(torch.load(model_path, weights_only=True))
        except Exception as exc:  # pickles, truncation, shape mismatch
            raise ConfigError(f"{model_path} cannot be loaded as biofuse model weights "
                              f"({type(exc).__name__}).",
                              "biofuse loads only plain tensor state dicts written by `biofuse "
                              "fit`; train the model again.") from None
        return SavedRun(self.path, config, model_cfg, Targets(**config["targets"]), model)


#: what to do about a run record that cannot be used as it is
REWRITTEN = ("It was damaged or edited by hand (or written by an incompatible biofuse): train "
             "the model again with `biofuse fit` (or `finetune`), or restore the file.")


def _check_run_record(r: Record) -> None:
    """The fields of a run's config.json that predict and report rely on, typed."""
    from biofuse.fusion import FUSIONS
    from biofuse.heads import HEADS
    from biofuse.options import from_dict
    from biofuse.pipeline.data import DataSpec

    kind = r.get("kind", str, "fit")
    if kind not in ("fit", "finetune"):
        raise ConfigError(f"{r.source}: kind = {kind!r} is neither fit nor finetune.", r.fix)
    known = {f for f in DataSpec.__dataclass_fields__}
    try:
        from_dict(DataSpec, {k: v for k, v in r.section("data").doc.items() if k in known})
    except ConfigError as exc:
        raise ConfigError(f"{r.source}: data: {exc.problem}", r.fix) from None
    targets = r.section("targets")
    task = targets.get("task", str)
    if task not in ("regression", "classification"):
        raise ConfigError(f"{r.source}: targets.task = {task!r} is neither regression nor "
                          "classification.", r.fix)
    names = targets.get("names", list)
    classes = targets.get("classes", list, None)
    for key in ("mean", "std"):
        values = targets.get(key, list, None)
        if values is not None and (len(values) != len(names) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
            raise ConfigError(f"{r.source}: targets.{key} is not one number per target.", r.fix)
    targets.get("log1p", bool, False)
    if not all(isinstance(n, str) for n in names) or not names or (
            task == "classification" and not (classes and all(isinstance(c, str)
                                                              for c in classes))):
        raise ConfigError(f"{r.source}: targets.names / classes are not lists of names.", r.fix)
    if kind == "finetune":
        r.section("finetune")
        head = r.section("head")
        if head.get("name", str) not in HEADS:
            raise ConfigError(f"{r.source}: head.name is not a registered head.", r.fix)
        head.get("in_dim", int), head.get("n_outputs", int), head.get("options", dict)
        r.section("resolved").get("dtype", str)
        return
    fit = r.section("fit")
    fit.get("batch_size", int), fit.get("dtype", str)
    for modality, entry in r.mapping("encoders", dict).items():
        Record(entry, r.source, r.fix, f"encoders.{modality}").get("store", str)
    model = r.section("model")
    if model.get("fusion", str) not in FUSIONS or model.get("head", str) not in HEADS:
        raise ConfigError(f"{r.source}: model.fusion / model.head is not a registered method.",
                          r.fix)
    modalities = model.get("modalities", list)
    dims, nt = model.mapping("dims", int), model.mapping("nt_per_token", int)
    if not modalities or any(m not in dims or m not in nt for m in modalities):
        raise ConfigError(f"{r.source}: model.modalities do not match model.dims / "
                          "nt_per_token.", r.fix)
    model.get("n_outputs", int), model.get("fusion_options", dict, {})
    model.get("head_options", dict, {})
    r.get("cache", str, None)


@dataclass
class FitResult:
    metrics: dict[str, Any]
    run_dir: Path
    interrupted: bool = False
    model: Any = field(default=None, repr=False)  # the FusionModel, or the probe


@dataclass
class SavedRun:
    path: Path
    config: dict[str, Any]
    model_config: ModelConfig
    targets: Targets
    model: FusionModel | Any  # or a scikit-learn probe (heads/probes.py)


def _finite(value: Any) -> Any:
    """NaN and infinities as null: run directories hold strict JSON, readable by any tool."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _write_json(path: Path, doc: dict) -> None:
    text = json.dumps(_finite(doc), indent=2, default=str, allow_nan=False)
    write_bytes_atomic(path, text.encode())
