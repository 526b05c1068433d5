"""What a results table says, in words: per dataset, does the best fusion beat the modalities
alone, and does the best deep model beat the best baseline? Each side is the configuration
chosen on validation (among those whose every seed finished); each comparison is made on
validation and on test, against the other side's mean minus one standard deviation over
seeds. The test split chooses nothing."""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from biofuse.heads import HEADS


def pm(mean, std, digits: int = 3) -> str:
    """'0.812 ± 0.004', or '—' for a missing mean."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None
                                   and not math.isnan(std) else "")


#: which configurations of a results table are baselines (scikit-learn probes), deep models,
#: and among the deep ones fusions and single modalities
BASELINES = pl.col("head").is_in([n for n, cls in HEADS.items() if cls.kind == "probe"])
DEEP = ~BASELINES
FUSIONS_ONLY = DEEP & (pl.col("fusion") != "none") & ~pl.col("fusion").str.starts_with("finetune-")
SINGLES_ONLY = DEEP & (pl.col("fusion") == "none")


def best_on_validation(rows: pl.DataFrame, which: pl.Expr) -> dict[str, Any] | None:
    """The configuration among ``which`` rows of a results table with the best mean validation
    score, among those whose every seed finished (None if there is none)."""
    done = rows.filter(which & (pl.col("complete") == pl.col("seeds"))
                       & pl.col("val_mean").is_not_null())
    return done.sort("val_mean", descending=True).row(0, named=True) if done.height else None


def _describe(r: dict[str, Any]) -> str:
    what = r["modalities"] if r["fusion"] == "none" else r["fusion"]
    options = f", {r['options']}" if r["options"] else ""
    return f"{what} ({r['encoders']}{options})"


def _against(ours: float | None, theirs: float | None, sd: float | None) -> str:
    if ours is None or theirs is None:
        return "not measured"
    sd = 0.0 if sd is None or math.isnan(sd) else sd
    if ours >= theirs:
        return f"at or above it (+{ours - theirs:.3f})"
    if ours >= theirs - sd:
        return f"within one standard deviation ({ours - theirs:+.3f}, sd {sd:.3f})"
    return f"**below it by more than one standard deviation** ({ours - theirs:+.3f}, sd {sd:.3f})"


def _verdict(rows: pl.DataFrame, ours: pl.Expr, theirs: pl.Expr, title: str, our_kind: str,
             their_kind: str, heads: bool = False) -> str | None:
    """``title``: the best of ``ours`` on validation against the best of ``theirs`` on
    validation, on validation and test, against the latter's mean minus one sd; None when the
    table lacks either side."""
    a, b = best_on_validation(rows, ours), best_on_validation(rows, theirs)
    if a is None or b is None:
        return None

    def named(r: dict[str, Any]) -> str:
        return _describe(r) + (f", {r['head']}" if heads else "")

    return (f"{title}: the best {our_kind} on validation, **{named(a)}** "
            f"({pm(a['val_mean'], a['val_std'])} validation, {pm(a['test_mean'], a['test_std'])} "
            f"test), against the best {their_kind} on validation, {named(b)} "
            f"({pm(b['val_mean'], b['val_std'])}, {pm(b['test_mean'], b['test_std'])}): "
            f"validation {_against(a['val_mean'], b['val_mean'], b['val_std'])}; test "
            f"{_against(a['test_mean'], b['test_mean'], b['test_std'])}.")


def fusion_vs_single(rows: pl.DataFrame) -> str | None:
    """"Does fusing beat the modalities alone?": the best (deep) fusion against the best single
    modality."""
    return _verdict(rows, FUSIONS_ONLY, SINGLES_ONLY, "Fusion against the modalities alone",
                    "fusion", "single modality")


def deep_vs_baseline(rows: pl.DataFrame) -> str | None:
    """"Is the deep model worth it?": the best deep model (fusion, single modality or finetune)
    against the best baseline (a scikit-learn probe)."""
    return _verdict(rows, DEEP, BASELINES, "The deep model against the baseline", "deep model",
                    "baseline", heads=True)


def verdicts(rows: pl.DataFrame) -> list[str]:
    """The verdicts one dataset's results table supports (fusion vs single, deep vs
    baseline)."""
    return [v for v in (fusion_vs_single(rows), deep_vs_baseline(rows)) if v]
