"""The report stage: run directories become tables, a page and figures.

Takes in: run directories (of `biofuse fit`, `finetune`, or an experiment's runs). Hands on:
results.py's tables — one row per run (``runs.parquet``), one per configuration averaged over
seeds with the one chosen on validation (``results.parquet/.csv/.md``), the fusion-vs-single
verdict — which `biofuse run` writes, and page.py's ``report.md`` with plots.py's figures
(published numbers beside ours, MIL weights, learning curves, attribution.py's per-codon view).
"""

from biofuse.pipeline.report.page import make_report

__all__ = ["make_report"]
