"""The report's figures, drawn to PNG files with matplotlib's Agg backend (no display needed).

Each function takes plain data (polars frames, numpy arrays) and a path, and writes one figure.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

COLORS = {"dna": "#4C72B0", "rna": "#DD8452", "protein": "#55A868"}
DPI = 110


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def comparison(ours: pl.DataFrame, published: pl.DataFrame, metric: str, title: str,
               path: Path) -> Path:
    """Horizontal bars: our configurations' test mean ± std beside the published numbers."""
    labels = [f"{r['fusion']}: {r['encoders']}" + (f" ({r['options']})" if r["options"] else "")
              for r in ours.iter_rows(named=True)]
    values = ours["test_mean"].to_list()
    errors = [e or 0.0 for e in ours["test_std"].to_list()]
    pub_labels = [f"{r['method']} [{r['source']}]" for r in published.iter_rows(named=True)]
    pub_values = published["value"].to_list()
    n = len(labels) + len(pub_labels)
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.32 * n))
    y = np.arange(n)
    ax.barh(y[:len(labels)], [v if v is not None else 0 for v in values], xerr=errors,
            color="#4C72B0", label="biofuse (test, mean ± std over seeds)")
    if pub_values:
        ax.barh(y[len(labels):], pub_values, color="#BBBBBB", label="published")
    ax.set_yticks(y, labels + pub_labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"test {metric}")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def mil_weights(means: pl.DataFrame, path: Path) -> Path:
    """Mean MIL modality weight per dataset, with and without the entropy term (bars)."""
    datasets = list(dict.fromkeys(means["dataset"].to_list()))
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.6 * len(datasets), 3.2), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        sub = means.filter(pl.col("dataset") == d)
        settings = sorted(set(sub["setting"].to_list()), reverse=True)  # "no entropy" first
        mods = sorted(set(sub["modality"].to_list()))
        width = 0.8 / max(len(settings), 1)
        for i, s in enumerate(settings):
            part = sub.filter(pl.col("setting") == s)
            vals = [part.filter(pl.col("modality") == m)["weight"].mean() or 0 for m in mods]
            ax.bar(np.arange(len(mods)) + i * width, vals, width, label=s,
                   color=[COLORS.get(m, "#888") for m in mods], hatch="//" if i else None,
                   edgecolor="black", linewidth=0.5)
        ax.set_xticks(np.arange(len(mods)) + width * (len(settings) - 1) / 2, mods)
        ax.set_ylim(0, 1)
        ax.set_title(d, fontsize=10)
        ax.set_ylabel("mean modality weight")
        if len(settings) > 1:
            from matplotlib.patches import Patch

            ax.legend([Patch(facecolor="white", edgecolor="black", hatch="//" if i else None)
                       for i in range(len(settings))], settings, fontsize=7)
    return _save(fig, path)


def weight_distributions(weights: pl.DataFrame, title: str, path: Path) -> Path:
    """Per-sample MIL weights of each modality (one box per modality)."""
    mods = [c.removeprefix("weight_") for c in weights.columns if c.startswith("weight_")]
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    data = [weights[f"weight_{m}"].drop_nulls().to_numpy() for m in mods]
    box = ax.boxplot(data, patch_artist=True)
    ax.set_xticks(range(1, len(mods) + 1), mods)
    for patch, m in zip(box["boxes"], mods):
        patch.set_facecolor(COLORS.get(m, "#888"))
    ax.set_ylim(0, 1)
    ax.set_ylabel("weight per sequence")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def attribution(ids: list[str], values: dict[str, list[np.ndarray]], aligned: bool,
                title: str, path: Path) -> Path:
    """Per-position gradient x input along a few sequences, one panel per sequence."""
    fig, axes = plt.subplots(len(ids), 1, figsize=(9, 1.9 * len(ids)), squeeze=False)
    for i, (ax, rid) in enumerate(zip(axes[:, 0], ids)):
        for m, rows in values.items():
            ax.plot(np.arange(1, len(rows[i]) + 1), rows[i], label=m, color=COLORS.get(m),
                    linewidth=1)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_title(rid, fontsize=8, loc="left")
        ax.set_ylabel("grad x input", fontsize=7)
        if i == 0:
            ax.legend(fontsize=7, ncol=3)
    axes[-1, 0].set_xlabel("codon position" if aligned else "token position")
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def learning_curves(logs: list[tuple[str, pl.DataFrame]], metric: str, title: str,
                    path: Path) -> Path:
    """Training loss and validation score per epoch, one line per run (and searched value)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    for label, log in logs:
        a.plot(log["epoch"], log["train_loss"], label=label, linewidth=1)
        b.plot(log["epoch"], log["val_score"], label=label, linewidth=1)
    a.set_xlabel("epoch")
    a.set_ylabel("training loss")
    b.set_xlabel("epoch")
    b.set_ylabel(f"validation {metric}")
    b.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def scatter(observed: np.ndarray, predicted: np.ndarray, rho: float | None, title: str,
            path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(observed, predicted, s=6, alpha=0.6)
    lo = float(np.nanmin([observed.min(), predicted.min()]))
    hi = float(np.nanmax([observed.max(), predicted.max()]))
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.5)
    ax.set_xlabel("observed")
    ax.set_ylabel("predicted")
    ax.set_title(f"{title}\nSpearman {'undefined' if rho is None else f'{rho:.3f}'} (test)",
                 fontsize=9)
    return _save(fig, path)


def per_target(names: list[str], values: list[float | None], metric: str, title: str,
               path: Path) -> Path:
    """One bar per target (e.g. per tissue) of a multi-target run."""
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(names)), 3.2))
    ax.bar(range(len(names)), [v if v is not None else 0 for v in values], color="#4C72B0")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"test {metric}")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def search_history(trials: list[dict], metric: str, title: str, path: Path) -> Path:
    """A search's trials in order: each complete trial's validation score, the best so far as a
    step line, pruned trials (at their last reported score, when known) as crosses."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    done = [t for t in trials if t.get("state") == "COMPLETE" and t.get("value") is not None]
    ax.scatter([t["number"] for t in done], [t["value"] for t in done], s=14,
               label="complete", color="#4C72B0")
    best, xs, ys = -np.inf, [], []
    for t in sorted(done, key=lambda t: t["number"]):
        best = max(best, t["value"])
        xs.append(t["number"])
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="#C44E52", label="best so far")
    pruned = [t["number"] for t in trials if t.get("state") == "PRUNED"]
    if pruned and done:
        low = min(t["value"] for t in done)
        ax.scatter(pruned, [low] * len(pruned), marker="x", color="grey", s=14,
                   label="pruned (drawn at the lowest score)")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def importances(values: dict[str, float], title: str, path: Path) -> Path:
    """Each searched option's share of the validation score's variance (Optuna's fANOVA)."""
    names = sorted(values, key=values.get)
    fig, ax = plt.subplots(figsize=(5, 0.5 + 0.4 * len(names)))
    ax.barh(names, [values[n] for n in names], color="#55A868")
    ax.set_xlabel("importance")
    ax.set_xlim(0, 1)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
