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


def fusion_vs_single(rows: pl.DataFrame) -> str | None:
    """One dataset's answer to "does fusing beat the modalities alone?": the fusion and the
    single modality each chosen on validation (among fully completed configurations), compared
    on validation and test against the single modality's mean minus its standard deviation
    over seeds. None when the table lacks either kind."""
    fusion = best_on_validation(rows, FUSIONS_ONLY)
    single = best_on_validation(rows, SINGLES_ONLY)
    if fusion is None or single is None:
        return None
    return (f"Fusion against the modalities alone: the best fusion on validation, "
            f"**{_describe(fusion)}** ({pm(fusion['val_mean'], fusion['val_std'])} validation, "
            f"{pm(fusion['test_mean'], fusion['test_std'])} test), against the best single "
            f"modality on validation, {_describe(single)} "
            f"({pm(single['val_mean'], single['val_std'])}, "
            f"{pm(single['test_mean'], single['test_std'])}): validation "
            f"{_against(fusion['val_mean'], single['val_mean'], single['val_std'])}; test "
            f"{_against(fusion['test_mean'], single['test_mean'], single['test_std'])}.")




def deep_vs_baseline(rows: pl.DataFrame) -> str | None:
    """One dataset's answer to "is the deep model worth it?": the deep model (fusion, single
    modality or finetune) and the baseline (a scikit-learn probe) each chosen on validation,
    compared on validation and test against the baseline's mean minus its standard deviation.
    None when the table lacks either kind."""
    deep = best_on_validation(rows, DEEP)
    baseline = best_on_validation(rows, BASELINES)
    if deep is None or baseline is None:
        return None
    return (f"The best deep model against the best baseline: **{_describe(deep)}**, "
            f"{deep['head']} ({pm(deep['val_mean'], deep['val_std'])} validation, "
            f"{pm(deep['test_mean'], deep['test_std'])} test), against "
            f"{_describe(baseline)}, {baseline['head']} "
            f"({pm(baseline['val_mean'], baseline['val_std'])}, "
            f"{pm(baseline['test_mean'], baseline['test_std'])}): validation "
            f"{_against(deep['val_mean'], baseline['val_mean'], baseline['val_std'])}; test "
            f"{_against(deep['test_mean'], baseline['test_mean'], baseline['test_std'])}.")


def verdicts(rows: pl.DataFrame) -> list[str]:
    """The verdicts one dataset's results table supports (fusion vs single, deep vs
    baseline)."""
    return [v for v in (fusion_vs_single(rows), deep_vs_baseline(rows)) if v]
