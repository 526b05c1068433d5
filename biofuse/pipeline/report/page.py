"""`biofuse report`: a Markdown page and PNG figures from experiment folders or run directories.

```
REPORT/report.md                      the page: results per dataset beside published numbers,
                                      MIL weights, and per dataset the chosen configuration's
                                      learning curves, test scatter, attribution along the
                                      sequence and per-target metrics
REPORT/<dataset>-comparison.png       ours (test, mean ± std) beside the published numbers
REPORT/mil-weights.png                mean MIL modality weights, with and without entropy term
REPORT/<dataset>-mil-per-sample.png   the weights of every sequence (chosen MIL configuration)
REPORT/<dataset>-curves.png           training loss and validation score per epoch
REPORT/<dataset>-scatter.png          predicted vs observed on the test split
REPORT/<dataset>-attribution.png      gradient x input per codon for a few test sequences
REPORT/<dataset>-per-target.png       per-target test metric (multi-target runs)
```
A figure that cannot be drawn (a moved table, a cleared cache) is replaced by a sentence saying
why; the rest of the report is still written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from biofuse.errors import BiofuseError, ConfigError
from biofuse.files import (
    Record,
    disk_error,
    disk_errors,
    read_bytes,
    safe_name,
    write_bytes_atomic,
)
from biofuse.pipeline.report import plots, searches
from biofuse.pipeline.report.results import (
    failed_section,
    mil_weights,
    read_run,
    read_runs_table,
    runs_frame,
    summarise,
)
from biofuse.pipeline.report.verdicts import pm, verdicts
from biofuse.pipeline.train.rundir import LOG_COLUMNS, run_cache
from biofuse.references import SOURCES, load_references, reference_key


def figure(out: Path, dataset: object, view: str) -> Path:
    """The PNG of one view of one dataset; the dataset's name (from run records, which anyone can
    edit) becomes a safe file name, so a figure is always written inside ``out``."""
    return out / f"{safe_name(dataset)}-{view}.png"


def collect_runs(inputs: list[str | Path]) -> pl.DataFrame:
    """Runs from experiment folders (their runs.parquet), run directories, or folders holding
    run directories."""
    frames, rows = [], []
    for item in map(Path, inputs):
        if (item / "runs.parquet").is_file():
            frames.append(read_runs_table(item))
        elif (item / "config.json").is_file():
            rows.append(read_run(item))
        elif item.is_dir() and any(item.rglob("config.json")):
            rows += [read_run(c.parent) for c in sorted(item.rglob("config.json"))]
        else:
            raise ConfigError(f"{item} is neither an experiment folder (runs.parquet), a run "
                              "directory (config.json) nor a folder holding run directories.",
                              "Pass the output folder of `biofuse run` or `--out` folders of "
                              "`biofuse fit`.")
    if rows:
        frames.append(runs_frame(rows))
    runs = pl.concat(frames, how="diagonal_relaxed").unique("run_dir", keep="first",
                                                            maintain_order=True)
    if not runs.filter(pl.col("status") == "complete").height:
        damaged = runs.filter(pl.col("status") == "damaged")
        why = (f" ({damaged.height} of them have records that cannot be read, e.g. "
               f"{damaged['run_dir'][0]}: {damaged['error'][0]})" if damaged.height else "")
        raise ConfigError(f"None of the runs given has finished, so there is nothing to "
                          f"report{why}.", "Finish them with `biofuse run` (or `biofuse fit`) "
                          "first; a damaged run is trained again by `biofuse run`.")
    return runs


def make_report(inputs: list[str | Path], out: str | Path, *,
                references: tuple[str, ...] = ("all",), cache: str | Path | None = None,
                examples: int = 3, echo=lambda s: None) -> Path:
    """Write ``out/report.md`` and its figures; returns the page's path."""
    out = Path(out)
    refs = load_references(references)  # a bad --reference fails before any work
    runs = collect_runs(inputs)
    out.mkdir(parents=True, exist_ok=True)
    with disk_errors(out):
        return _write_report(runs, refs, out, cache, examples, echo, inputs)


def _write_report(runs: pl.DataFrame, refs: pl.DataFrame, out: Path, cache, examples: int,
                  echo, inputs: list[str | Path] = ()) -> Path:
    table = summarise(runs)
    md = ["# biofuse report", "",
          f"{runs.height} fits ({runs.filter(pl.col('status') == 'complete').height} finished) "
          f"of {table.height} configurations on {table['dataset'].n_unique()} dataset(s). "
          "Scores are test-split means ± std over seeds; ★ marks the configuration chosen on "
          "validation (the test split chooses nothing).", ""]
    for dataset in dict.fromkeys(table["dataset"].to_list()):
        echo(f"report: {dataset}")
        md += _dataset_section(dataset, table.filter(pl.col("dataset") == dataset), runs, refs,
                               out, cache, examples)
    md += view("MIL-weights", lambda: _mil_section(runs, table, out))
    metric = next((m for m in table["metric"].to_list() if m), "spearman")
    md += view("search", lambda: searches.section(list(inputs), out, metric))
    used = sorted(set(refs["source"].to_list()) & set(SOURCES))
    if used:
        md += ["## Sources of the published numbers", ""]
        md += [f"- **{s}**: {SOURCES[s].citation}; split: {SOURCES[s].split}." for s in used]
        md.append("")
    md += failed_section(runs)
    md += ["## Runs", "", "Every fit of this report, by run directory:", ""]
    md += [f"- `{r['run_dir']}` ({r['status']})" for r in runs.iter_rows(named=True)]
    page = out / "report.md"
    write_bytes_atomic(page, ("\n".join(md) + "\n").encode())
    return page


def _dataset_section(dataset: str, table: pl.DataFrame, runs: pl.DataFrame, refs: pl.DataFrame,
                     out: Path, cache, examples: int) -> list[str]:
    metric = next((m for m in table["metric"].to_list() if m), "spearman")
    reference = table["reference"][0] or dataset
    split_from = table["split_from"][0]
    md = [f"## {dataset}", "", f"| | fusion | head | modalities | encoders | options | seeds | "
          f"val {metric} | test {metric} | test, ensemble |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.iter_rows(named=True):
        md.append(f"| {'★' if r['chosen'] else ''} | {r['fusion']} | {r['head']} | "
                  f"{r['modalities']} | {r['encoders']} | {r['options'] or ''} | "
                  f"{r['complete']}/{r['seeds']} | {pm(r['val_mean'], r['val_std'])} | "
                  f"{pm(r['test_mean'], r['test_std'])} | {pm(r.get('test_ensemble'), None)} |")
    md += [line for v in verdicts(table) for line in ("", v)]
    published = refs.filter((pl.col("key") == reference_key(reference)) & (pl.col("metric") == metric))
    md.append("")
    if published.height:
        md += [f"Published {metric} on {published['dataset'][0]} (test):", "",
               "| source | method | value | same split as ours |", "|---|---|---|---|"]
        for r in published.iter_rows(named=True):
            same = "yes" if split_from == r["source"] else "no"
            md.append(f"| {r['source']} | {r['method']} | {r['value']:.3f} | {same} |")
        md.append("")
        if split_from is None:
            md += ["The split differs from the published ones (or is not declared: set "
                   "`split_from` on the dataset in the experiment file when its split column "
                   "is a paper's), so the numbers are indicative, not a head-to-head result.",
                   ""]
    else:
        md += [f"No published {metric} for '{reference}' in the references given "
               "(`--reference`; set `reference = \"NAME\"` on the dataset to match a "
               "published dataset name).", ""]
    ours = table.filter(pl.col("test_mean").is_not_null())
    if ours.height:
        png = plots.comparison(ours, published, metric, f"{dataset}: test {metric}",
                               figure(out, dataset, "comparison"))
        md += [f"![{dataset}: ours beside published]({png.name})", ""]
    md += _finetune_section(dataset, table, published)
    chosen = table.filter(pl.col("chosen"))
    if chosen.height:
        md += _chosen_views(dataset, chosen.row(0, named=True), runs, out, cache, examples)
    return md


#: encoder name prefix -> the model family's name in the Bridging paper's table
_FAMILIES = {"esm2": "ESM-2", "nt_": "NT", "rnafm": "RNA-FM"}
#: how each way of training an encoder is called in our results and in the Bridging paper
_TRAINING = (("none", "probing (frozen)", "probing"), ("finetune-lora", "LoRA", "LoRA"),
             ("finetune-full", "full finetuning", "full FT"))


def _finetune_section(dataset: str, table: pl.DataFrame, published: pl.DataFrame) -> list[str]:
    """Per encoder that was finetuned: frozen probing vs LoRA vs full (each the best
    configuration on validation), beside the Bridging paper's numbers for the same family."""
    tuned = table.filter(pl.col("fusion").str.starts_with("finetune-"))
    if not tuned.height:
        return []
    metric = next((m for m in table["metric"].to_list() if m), "spearman")
    md = [f"### {dataset}: probing vs finetuning", "",
          "Each encoder frozen (`fusion = \"none\"` on its cached embeddings), with LoRA "
          "adapters, and fully finetuned: the best configuration of each on validation; test "
          f"{metric} mean ± std over seeds.", "",
          "| encoder | training | options | val | test | Bridging (published) |",
          "|---|---|---|---|---|---|"]
    for encoder in dict.fromkeys(tuned["encoders"].to_list()):
        name = encoder.split("=", 1)[-1]
        family = next((f for prefix, f in _FAMILIES.items() if name.startswith(prefix)), None)
        for fusion, label, paper in _TRAINING:
            rows = table.filter((pl.col("encoders") == encoder) & (pl.col("fusion") == fusion)
                                ).sort("val_mean", descending=True, nulls_last=True)
            ref = published.filter(pl.col("method") == f"{paper} {family}") if family else None
            ref_text = (f"{ref['value'][0]:.3f}" if ref is not None and ref.height else "—")
            if not rows.height:
                md.append(f"| {name} | {label} | not run | | | {ref_text} |")
                continue
            r = rows.row(0, named=True)
            md.append(f"| {name} | {label} | {r['options'] or ''} | "
                      f"{pm(r['val_mean'], r['val_std'])} | {pm(r['test_mean'], r['test_std'])} "
                      f"| {ref_text} |")
    return md + [""]


def _chosen_runs(runs: pl.DataFrame, config_id: str) -> pl.DataFrame:
    return runs.filter((pl.col("config_id") == config_id) & (pl.col("status") == "complete")
                       ).sort("seed")


def view(what: str, draw: Callable[[], list[str]]) -> list[str]:
    """One view of the page; a view that cannot be drawn (a run's file damaged, edited or gone)
    becomes a sentence saying why, and the rest of the report is written. A full disk is not a
    view's problem: it stops the report (exit 2)."""
    try:
        return draw()
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        if disk_error(exc, ".") is not None:
            raise
        reason = (exc.problem if isinstance(exc, BiofuseError)
                  else f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return [f"(No {what} view: {reason})", ""]


def _chosen_views(dataset: str, chosen: dict[str, Any], runs: pl.DataFrame, out: Path, cache,
                  examples: int) -> list[str]:
    label = f"{chosen['fusion']} ({chosen['modalities']})"
    md = [f"### {dataset}: the chosen configuration, {label}", ""]
    mine = _chosen_runs(runs, chosen["config_id"])
    md += view("learning-curve", lambda: _curves(dataset, label, chosen, mine, out))
    first = Path(mine["run_dir"][0])
    md += view("predicted-vs-observed", lambda: _scatter(dataset, label, first, out))
    md += view("attribution", lambda: _attribution(dataset, label, first, out, cache, examples))
    return md


def _curves(dataset: str, label: str, chosen: dict[str, Any], mine: pl.DataFrame,
            out: Path) -> list[str]:
    logs = []
    for r in mine.iter_rows(named=True):
        log_path = Path(r["run_dir"]) / "train_log.csv"
        if log_path.is_file():
            log = pl.read_csv(read_bytes(log_path, "training log"))
            tag = [c for c in log.columns if c not in LOG_COLUMNS]
            if tag:
                for value in log[tag[0]].unique(maintain_order=True).to_list():
                    logs.append((f"seed {r['seed']}, {tag[0]} {value}",
                                 log.filter(pl.col(tag[0]) == value)))
            else:
                logs.append((f"seed {r['seed']}", log))
    if not logs:
        return []
    png = plots.learning_curves(logs, chosen["metric"] or "score", f"{dataset}: {label}",
                                figure(out, dataset, "curves"))
    return [f"![learning curves]({png.name})", ""]


def _scatter(dataset: str, label: str, run_dir: Path, out: Path) -> list[str]:
    preds_path, metrics_path = run_dir / "predictions.parquet", run_dir / "metrics.json"
    if not preds_path.is_file() or not metrics_path.is_file():
        return []
    preds = pl.read_parquet(read_bytes(preds_path, "predictions")).filter(
        pl.col("split") == "test")
    metrics = Record.read(metrics_path, "").doc
    targets = [c.removeprefix("pred_") for c in preds.columns if c.startswith("pred_")]
    if not preds.height or not targets or metrics.get("task") == "classification":
        return []
    md = []
    name = targets[0]
    rho = ((metrics.get("test") or {}).get("per_target") or {}).get(name, {}).get("spearman")
    png = plots.scatter(preds[f"y_{name}"].to_numpy(), preds[f"pred_{name}"].to_numpy(), rho,
                        f"{dataset}: {label}, {name}", figure(out, dataset, "scatter"))
    md += [f"![predicted vs observed]({png.name})", ""]
    per_target = (metrics.get("test") or {}).get("per_target") or {}
    if len(per_target) > 1:
        names = list(per_target)
        png = plots.per_target(names, [per_target[n].get("spearman") for n in names],
                               "spearman", f"{dataset}: {label}, per target",
                               figure(out, dataset, "per-target"))
        md += [f"![per-target metrics]({png.name})", ""]
    return md


def _attribution(dataset: str, label: str, run_dir: Path, out: Path, cache,
                 examples: int) -> list[str]:
    """Gradient x input for the first ``examples`` test rows of the run's table."""
    from biofuse.options import from_dict
    from biofuse.pipeline.data import DataSpec, load_dataset
    from biofuse.pipeline.report.attribution import attribute
    from biofuse.pipeline.train.rundir import RunDir

    try:
        if RunDir(run_dir).read_config().get("kind") == "finetune":
            return ["(No attribution view for a finetuned encoder: attribution reads cached "
                    "embeddings; extract the run's encoder and fit on it to get one.)", ""]
        saved = RunDir(run_dir).load()
        if getattr(saved.model, "kind", "network") == "probe":
            return ["(No attribution view for a scikit-learn probe: it reads each modality's "
                    "pooled embedding, not positions along the sequence.)", ""]
        ds = load_dataset(from_dict(DataSpec, saved.config["data"]))
        rows = np.flatnonzero(ds.frame["split"].to_numpy() == "test")[:examples]
        if not len(rows):
            return []
        stores = {m: e["store"] for m, e in saved.config["encoders"].items()}
        att = attribute(saved.model, ds, rows, stores, run_cache(saved.config, cache),
                        output=-1 if saved.targets.task == "classification" else 0)
    except (BiofuseError, OSError, KeyError) as exc:
        return [f"(No attribution view: {exc})", ""]
    png = plots.attribution(att.ids, att.values, att.aligned,
                            f"{dataset}: {label}: gradient x input per position",
                            figure(out, dataset, "attribution"))
    return ["Where along the sequence the prediction comes from (gradient x input per "
            "codon and modality, for the first test sequences):", "",
            f"![attribution]({png.name})", ""]


def _mil_section(runs: pl.DataFrame, table: pl.DataFrame, out: Path) -> list[str]:
    mil = runs.filter((pl.col("fusion") == "mil") & (pl.col("status") == "complete"))
    rows = []
    for r in mil.iter_rows(named=True):
        lam = json.loads(r["selected"] or "{}").get("entropy_weight", 0.0) or 0.0
        setting = "no entropy term" if lam == 0 else "entropy term"
        rows += [{"dataset": r["dataset"], "setting": setting, "modality": m, "weight": w}
                 for m, w in mil_weights(r["run_dir"]).items()]
    if not rows:
        return []
    means = pl.DataFrame(rows)
    png = plots.mil_weights(means, out / "mil-weights.png")
    md = ["## MIL modality weights", "",
          "Mean weight of each modality over all sequences, per dataset, for MIL fits without "
          "(λ = 0) and with the entropy term (λ > 0, chosen on validation). A weight near 1 "
          "means the model reads that modality; near 0, it ignores it.", "",
          f"![MIL weights]({png.name})", ""]
    summary = means.group_by(["dataset", "setting", "modality"], maintain_order=True).agg(
        pl.col("weight").mean())
    md += ["| dataset | setting | " + " | ".join(sorted(set(means["modality"]))) + " |",
           "|---|---|" + "---|" * len(set(means["modality"]))]
    for (d, s), part in summary.group_by(["dataset", "setting"], maintain_order=True):
        w = dict(zip(part["modality"], part["weight"]))
        md.append(f"| {d} | {s} | " + " | ".join(f"{w.get(m, float('nan')):.2f}"
                                                 for m in sorted(set(means["modality"]))) + " |")
    md.append("")
    for d in dict.fromkeys(mil["dataset"].to_list()):
        best = (table.filter((pl.col("dataset") == d) & (pl.col("fusion") == "mil"))
                .sort("val_mean", descending=True, nulls_last=True))
        if not best.height:
            continue
        run = _chosen_runs(runs, best["config_id"][0])
        path = Path(run["run_dir"][0]) / "attention.parquet" if run.height else None
        if path is not None and path.is_file():
            png = plots.weight_distributions(pl.read_parquet(path),
                                             f"{d}: MIL weight per sequence (best MIL)",
                                             figure(out, d, "mil-per-sample"))
            md += [f"![{d}: per-sample MIL weights]({png.name})", ""]
    return md
