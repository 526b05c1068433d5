"""The report's searches: per study of an experiment folder (``OUT/search/.../summary.json``,
written by the experiment stage's search), its trials, best configuration, optimisation history
and the options' importances."""

from __future__ import annotations

import json
from pathlib import Path

from biofuse.errors import BiofuseError
from biofuse.files import read_text, safe_name
from biofuse.pipeline.report import plots


def summaries(inputs: list[str | Path]) -> list[tuple[Path, dict]]:
    """The search summaries of the experiment folders among ``inputs`` (none for run dirs)."""
    found = []
    for item in map(Path, inputs):
        for path in sorted((item / "search").glob("*/*/summary.json")) if (
                item / "search").is_dir() else []:
            try:
                doc = json.loads(read_text(path, "search summary"))
            except (ValueError, BiofuseError) as exc:  # named on the page, not fatal
                found.append((path, {"error": getattr(exc, "problem", str(exc))}))
                continue
            found.append((path, doc if isinstance(doc, dict) else {"error": "not an object"}))
    return found


def section(inputs: list[str | Path], out: Path, metric: str = "spearman") -> list[str]:
    """Markdown lines (and figures in ``out``) for every search; none without searches."""
    found = summaries(inputs)
    if not found:
        return []
    md = ["## Searches", "",
          "Each search's trials trained with the first seed and were scored on validation only; "
          "its best configuration was then re-run for every seed (the `tuned` rows above).", ""]
    for path, s in found:
        if "error" in s:
            md += [f"- `{path}` cannot be read ({s['error']})", ""]
            continue
        name = f"{s.get('dataset')} {s.get('method')}-{s.get('head')}"
        best = s.get("best") or {}
        md += [f"### {name}", "",
               f"{s.get('finished_trials', 0)} trials ({s.get('complete', 0)} complete, "
               f"{s.get('pruned', 0)} pruned, {s.get('failed', 0)} failed), "
               f"{s.get('trial_seconds', 0):.0f} s of training; space: "
               + ", ".join(f"{k} {v}" for k, v in (s.get("space") or {}).items()) + ".", ""]
        if best:
            md += [f"Best: trial {best.get('number')}, validation {best.get('value'):.3f}: "
                   + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in (best.get("params") or {}).items()) + ".", ""]
        stem = safe_name(f"{s.get('dataset')}-{path.parent.name}")
        fig = plots.search_history(s.get("trials") or [], metric, f"{name}: trials",
                                   out / f"{stem}-search.png")
        md += [f"![{name}: trials]({fig.name})", ""]
        if s.get("importances"):
            fig = plots.importances(s["importances"], f"{name}: option importances",
                                    out / f"{stem}-importances.png")
            md += [f"![{name}: importances]({fig.name})", ""]
    return md
