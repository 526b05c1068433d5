"""Results tables from run directories: one row per fit (``runs``), one per configuration
averaged over seeds (``results``), and the configuration chosen on validation per dataset.

```
OUT/runs.parquet       one row per fit: dataset, configuration, seed, status, val/test metric,
                       epochs, seconds, run directory, error
OUT/results.parquet    one row per configuration: mean ± std over seeds; `chosen` marks the
OUT/results.csv        configuration with the best mean validation score of its dataset
OUT/results.md         the same for people, per dataset, failures listed
```
The test split never chooses anything: ``chosen`` looks at validation only.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import polars as pl

from biofuse.errors import BiofuseError
from biofuse.files import read_bytes, read_text, write_atomic, write_bytes_atomic
from biofuse.pipeline.report.ensembles import seed_ensembles
from biofuse.pipeline.report.verdicts import pm, verdicts
from biofuse.pipeline.train.rundir import canonical_config

#: fit options that are columns of their own (or not part of a configuration)
_OWN_COLUMNS = ("fusion", "head", "modalities", "encoders", "seed", "threads", "fusion_options",
                "head_options")


def read_run(run_dir: Path) -> dict[str, Any]:
    """One fit's row, from its run directory (config.json, metrics.json, error.txt). A record
    that cannot be read, or was edited into another shape, gives a row with status "damaged"
    and the reason, so one bad run does not stop a report of the others."""
    run_dir = Path(run_dir)
    row: dict[str, Any] = {"run_dir": str(run_dir), "status": "missing", "error": None}
    try:
        return _read_run(run_dir, row)
    except (BiofuseError, ValueError, TypeError, AttributeError, KeyError) as exc:
        reason = exc.problem if isinstance(exc, BiofuseError) else f"{type(exc).__name__}: {exc}"
        return {**row, "status": "damaged", "error": f"its records cannot be read ({reason})"}


def _read_run(run_dir: Path, row: dict[str, Any]) -> dict[str, Any]:
    try:
        config = canonical_config(json.loads(read_text(run_dir / "config.json", "run record")))
    except (BiofuseError, ValueError):
        config = None
    error = run_dir / "error.txt"
    if error.is_file():
        row["status"] = "failed"
        row["error"] = read_text(error, "error record").split("\n\n")[0].strip()
    if config is None:
        return row
    if not isinstance(config, dict):
        raise TypeError("config.json is not a JSON object")
    row.update(dataset=Path(config.get("data", {}).get("path", "?")).stem,
               dataset_hash=config.get("dataset_hash"), config_id=_config_id(config))
    if config.get("kind") == "finetune":
        ft = config.get("finetune", {})
        row.update(fusion=f"finetune-{ft.get('method')}", head=ft.get("head"),
                   modalities=ft.get("modality"),
                   encoders=f"{ft.get('modality')}={Path(str(ft.get('model'))).name}",
                   seed=ft.get("seed"),
                   options_json=json.dumps(_finetune_options(ft), sort_keys=True))
    else:
        fit = config.get("fit", {})
        row.update(fusion=fit.get("fusion"), head=fit.get("head"),
                   modalities="+".join(fit.get("modalities", [])),
                   encoders=" ".join(f"{m}={e}" for m, e in fit.get("encoders", {}).items()),
                   seed=fit.get("seed"),
                   options_json=json.dumps(_options(fit, config.get("model")), sort_keys=True))
    if row["status"] != "failed":
        row["status"] = config.get("status", "running")
    try:
        metrics = json.loads(read_text(run_dir / "metrics.json", "metrics record"))
    except (BiofuseError, ValueError) as exc:
        if row["status"] == "complete":  # finished, but its scores are gone or damaged
            raise ValueError(f"metrics.json: {exc}") from None
        return row
    if not isinstance(metrics, dict):
        raise TypeError("metrics.json is not a JSON object")
    if row["status"] != "complete":
        return row
    key = "accuracy" if metrics.get("task") == "classification" else "spearman"
    row.update(metric=key, val=(metrics.get("val") or {}).get(key),
               test=(metrics.get("test") or {}).get(key), best_epoch=metrics.get("best_epoch"),
               epochs=metrics.get("epochs"), seconds=metrics.get("seconds"),
               selected=json.dumps(metrics.get("selected") or {}))
    return row


def _options(fit: dict, model: dict | None = None) -> dict[str, Any]:
    """A fit's options as flat ``key: value``, a method's own as ``method.key``: resolved (every
    default filled in) from the model config when there is one, else as given. The option a
    fusion chooses on validation (MIL's entropy weight) is a result, not an option: left out."""
    from biofuse.fusion import FUSIONS
    from biofuse.pipeline.train.options import unused_search_fields

    method = FUSIONS.get(fit.get("fusion"))
    searched = method.search if method is not None and method.search else ("", "")
    unused = unused_search_fields(fit.get("fusion"))
    out = {k: v for k, v in fit.items() if k not in _OWN_COLUMNS and k not in unused}
    fusion_options = (_as_built(model) if model and "fusion_options" in model
                      else fit.get("fusion_options") or {})
    head_options = (model or {}).get("head_options", fit.get("head_options") or {})
    out |= {f"{fit.get('fusion')}.{k}": v for k, v in fusion_options.items() if k != searched[0]}
    out |= {f"{fit.get('head')}.{k}": v for k, v in head_options.items()}
    return out


def _as_built(model: dict) -> dict[str, Any]:
    """A saved model's fusion options with the widths and heads that follow the inputs filled
    in (configs written before 0.10 left them ``None``), so one configuration reads the same
    whichever biofuse saved it; as saved when the config cannot be read that way."""
    from biofuse.fusion.model import ModelConfig

    try:
        return ModelConfig.from_dict(model).resolved_fusion_options()
    except Exception:  # a damaged or foreign record: shown as it is
        return model["fusion_options"]


#: finetune options that are columns of their own (or not part of a configuration)
_FINETUNE_OWN = ("modality", "model", "method", "head", "seed", "threads", "head_options",
                 "device")


def _finetune_options(ft: dict) -> dict[str, Any]:
    """A finetune's options as flat ``key: value`` (its head's as ``head.key``); LoRA's options
    only for LoRA runs."""
    out = {k: v for k, v in ft.items() if k not in _FINETUNE_OWN
           and not (ft.get("method") == "full" and k.startswith("lora_"))}
    return out | {f"{ft.get('head')}.{k}": v for k, v in (ft.get("head_options") or {}).items()}


def _config_id(config: dict) -> str:
    section = config.get("finetune") if config.get("kind") == "finetune" else config.get("fit")
    fit = {k: v for k, v in (section or {}).items() if k not in ("seed", "threads")}
    stores = {m: e.get("store") for m, e in (config.get("encoders") or {}).items()}
    doc = [config.get("dataset_hash"), stores, fit]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


_SCHEMA = {"dataset": pl.String, "group": pl.String, "config_id": pl.String,
           "run_dir": pl.String, "status": pl.String, "fusion": pl.String, "head": pl.String,
           "modalities": pl.String, "encoders": pl.String, "options_json": pl.String,
           "seed": pl.Int64, "metric": pl.String, "val": pl.Float64, "test": pl.Float64,
           "best_epoch": pl.Int64, "epochs": pl.Int64, "seconds": pl.Float64,
           "selected": pl.String, "error": pl.String, "reference": pl.String,
           "split_from": pl.String, "tuned": pl.String, "searched": pl.String}


def read_runs_table(folder: Path) -> pl.DataFrame:
    """An experiment folder's runs.parquet, in the table's own types; when it is unreadable or
    not a runs table (damaged, edited), the run directories under ``runs/`` instead, with a
    warning: they are what the table summarises."""
    path = folder / "runs.parquet"
    try:
        frame = pl.read_parquet(read_bytes(path, "runs table"))
        missing = [c for c in ("run_dir", "status", "dataset", "config_id") if c not in frame.columns]
        if missing:
            raise ValueError(f"no column {', '.join(missing)}")
        # cast to the table's types; a column a newer biofuse added (a search's "tuned") is
        # empty in a table an older one wrote
        frame = frame.with_columns(*(pl.col(c).cast(dtype, strict=False) if c in frame.columns
                                     else pl.lit(None, dtype).alias(c)
                                     for c, dtype in _SCHEMA.items()))
        if frame.select(pl.col("run_dir", "dataset", "config_id").is_null().any()).row(0) != (
                False, False, False):
            raise ValueError("rows without a run directory, dataset or configuration")
        return frame
    except (BiofuseError, pl.exceptions.PolarsError, OSError, ValueError) as exc:
        reason = exc.problem if isinstance(exc, BiofuseError) else f"{type(exc).__name__}: {exc}"
        warnings.warn(f"{path} cannot be used ({reason}); reading the run directories under "
                      f"{folder / 'runs'} instead (experiment-level columns such as the table "
                      "names are then missing).", stacklevel=2)
        configs = sorted((folder / "runs").rglob("config.json")) if (folder / "runs").is_dir() \
            else []
        # runs/<dataset>/<run>: the folder names the dataset as the experiment did
        return runs_frame([{**read_run(c.parent), "dataset": c.parent.parent.name}
                           for c in configs])


def runs_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    rows = [{**r, "reference": r.get("reference") or r.get("dataset")} for r in rows]
    frame = pl.DataFrame([{k: r.get(k) for k in _SCHEMA} for r in rows], schema=_SCHEMA)
    return frame.with_columns(options=_option_labels(frame))


def runs_table(plan) -> pl.DataFrame:
    """One row per planned fit of an experiment, named as the experiment names them."""
    rows = []
    for f in plan.fits:
        row = read_run(f.run_dir)
        t = f.task
        row.update(dataset=t.dataset, group=t.group, config_id=f.config_id,
                   fusion=t.method, head=t.options["head"], modalities="+".join(t.modalities),
                   encoders=" ".join(f"{m}={Path(e).name}" for m, e in t.encoders.items()),
                   seed=t.options.get("seed", 0),
                   reference=plan.experiment.datasets[t.dataset].reference,
                   split_from=plan.experiment.datasets[t.dataset].split_from,
                   tuned=getattr(f, "tuned", None),
                   searched=",".join(getattr(f, "searched", ())) or None)
        if "options_json" not in row:
            options = t.resolved().to_dict()
            row["options_json"] = json.dumps(_finetune_options(options) if t.kind == "finetune"
                                             else _options(options), sort_keys=True)
        rows.append(row)
    return runs_frame(rows)


def _option_labels(frame: pl.DataFrame) -> pl.Series:
    """Per run, the options that differ between the runs of the table ("lr=0.003, mil.dim=128");
    an option set everywhere to one value says nothing and is left out. Fits and finetunes have
    different options (and defaults), so each is compared with its own kind."""
    parsed = [json.loads(s) if s else {} for s in frame["options_json"].to_list()]
    kinds = [str(f or "").startswith("finetune-") for f in frame["fusion"].to_list()]
    varying = {}
    for kind in set(kinds):
        group = [p for p, k in zip(parsed, kinds) if k == kind]
        keys = sorted({k for p in group for k in p})
        varying[kind] = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True)
                                                 for p in group if k in p}) > 1]
    searched = [set((s or "").split(",")) - {""} for s in (
        frame["searched"].to_list() if "searched" in frame.columns else [None] * len(parsed))]
    labels = [", ".join(f"{k}={_value(p[k])}" for k in sorted(p)
                        if k in varying[kind] or k in found)
              for p, kind, found in zip(parsed, kinds, searched)]
    return pl.Series("options", labels, dtype=pl.String)


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(_value(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def summarise(runs: pl.DataFrame) -> pl.DataFrame:
    """One row per (dataset, configuration): mean ± std over its seeds of the completed fits,
    the seed ensemble's scores (``val_ensemble``, ``test_ensemble``; ensembles.py); ``chosen``
    is the best mean validation score of the dataset among fully completed ones (an ensemble
    is reported, not chosen on)."""
    runs = runs.filter(pl.col("dataset").is_not_null())  # a damaged record names none
    if runs.is_empty():
        return pl.DataFrame()
    done = pl.col("status") == "complete"
    table = (runs.group_by(["dataset", "config_id"], maintain_order=True)
             .agg(pl.col("group", "fusion", "head", "modalities", "encoders", "options",
                         "reference", "split_from", "tuned").first(),
                  pl.col("metric").drop_nulls().first(),
                  pl.len().alias("seeds"), done.sum().alias("complete"),
                  (pl.col("status") == "failed").sum().alias("failed"),
                  pl.col("val").filter(done).mean().alias("val_mean"),
                  pl.col("val").filter(done).std().alias("val_std"),
                  pl.col("test").filter(done).mean().alias("test_mean"),
                  pl.col("test").filter(done).std().alias("test_std"),
                  pl.col("epochs").filter(done).mean().alias("epochs"),
                  pl.col("seconds").filter(done).mean().alias("seconds")))
    table = table.join(seed_ensembles(runs), on=["dataset", "config_id"], how="left")
    eligible = (pl.col("complete") == pl.col("seeds")) & pl.col("val_mean").is_not_null()
    best = (table.filter(eligible).group_by("dataset")
            .agg(pl.col("config_id").sort_by("val_mean", descending=True).first()
                 .alias("chosen_id")))
    table = (table.join(best, on="dataset", how="left")
             .with_columns(chosen=(pl.col("config_id") == pl.col("chosen_id")).fill_null(False))
             .drop("chosen_id"))
    order = {d: i for i, d in enumerate(dict.fromkeys(runs["dataset"].to_list()))}
    return (table.with_columns(pl.col("dataset").replace_strict(order).alias("_order"))
            .sort(["_order", "val_mean"], descending=[False, True], nulls_last=True)
            .drop("_order"))


def write(out: Path, name: str, runs: pl.DataFrame, table: pl.DataFrame) -> None:
    out = Path(out)
    write_atomic(out / "runs.parquet", runs.write_parquet)
    if table.is_empty():
        return
    write_atomic(out / "results.parquet", table.write_parquet)
    write_atomic(out / "results.csv", table.write_csv)
    write_bytes_atomic(out / "results.md", markdown(name, table, runs).encode())


def markdown(name: str, table: pl.DataFrame, runs: pl.DataFrame) -> str:
    metric = next((m for m in table["metric"].to_list() if m), "spearman")
    lines = [f"# Results: {name}", "",
             f"{metric.capitalize()} on the validation and test splits, mean ± std over seeds; "
             "ensemble: the seeds' predictions averaged, scored once (configurations with two "
             "or more seeds). ★ marks the configuration chosen on validation for its dataset "
             "(the test split chooses nothing); tuned: a search's best configuration on "
             "validation, re-run for every seed. Epochs: trained per fit (over every candidate "
             "of a searched option); seconds: wall time of one fit (loading, training, "
             "scoring).", ""]
    for dataset in dict.fromkeys(table["dataset"].to_list()):
        rows = table.filter(pl.col("dataset") == dataset)
        lines += [f"## {dataset}", "",
                  "| | fusion | head | modalities | encoders | options | seeds | val | test "
                  "| test, ensemble | epochs | s / fit |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows.iter_rows(named=True):
            seeds = (f"{r['complete']}" if r["complete"] == r["seeds"]
                     else f"{r['complete']} of {r['seeds']}")
            tuned = f" (tuned, {r['tuned']})" if r.get("tuned") else ""
            lines.append(
                f"| {'★' if r['chosen'] else ''} | {r['fusion']}{tuned} | {r['head']} | "
                f"{r['modalities']} | {r['encoders']} | {r['options'] or ''} | {seeds} | "
                f"{pm(r['val_mean'], r['val_std'])} | {pm(r['test_mean'], r['test_std'])} | "
                f"{pm(r.get('test_ensemble'), None)} | {pm(r['epochs'], None, 0)} | "
                f"{pm(r['seconds'], None, 1)} |")
        chosen = rows.filter(pl.col("chosen"))
        if chosen.height:
            c = chosen.row(0, named=True)
            lines += ["", f"Chosen on validation: **{c['fusion']}** ({c['modalities']}; "
                      f"{c['encoders']}{'; ' + c['options'] if c['options'] else ''}): "
                      f"validation {pm(c['val_mean'], c['val_std'])}, test "
                      f"{pm(c['test_mean'], c['test_std'])}."]
        lines += [line for v in verdicts(rows) for line in ("", v)]
        lines.append("")
    return "\n".join(lines + failed_section(runs))


def mil_weights(run_dir: str | Path) -> dict[str, float]:
    """A MIL run's mean attention weight per modality over every row ({} for other runs)."""
    path = Path(run_dir) / "attention.parquet"
    if not path.is_file():
        return {}
    frame = pl.read_parquet(read_bytes(path, "MIL weights"))
    return {c.removeprefix("weight_"): float(frame[c].cast(pl.Float64, strict=False).mean())
            for c in frame.columns if c.startswith("weight_")}


def failed_section(runs: pl.DataFrame) -> list[str]:
    """Markdown lines listing the failed fits, and runs whose records cannot be read, with
    their errors (none when there are none)."""
    failed = runs.filter(pl.col("status").is_in(["failed", "damaged"]))
    if not failed.height:
        return []
    return ["## Failed fits", ""] + [
        f"- {r['dataset'] or '?'} `{Path(r['run_dir']).name}`"
        + (" (damaged)" if r["status"] == "damaged" else "") + f": {r['error']}"
        for r in failed.iter_rows(named=True)] + [""]
