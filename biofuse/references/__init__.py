"""Published numbers shipped with biofuse, so a report shows them beside a user's results.

Each ``<source>.csv`` is in one long format: ``source, method, dataset, metric, value``
(Spearman as a correlation, accuracy as a fraction). A user's own reference file in the same
format is read by :func:`load_references` too (``biofuse report --reference FILE``).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from biofuse.errors import ConfigError
from biofuse.files import read_bytes

HERE = Path(__file__).parent
COLUMNS = ("source", "method", "dataset", "metric", "value")


@dataclass(frozen=True)
class Source:
    name: str
    citation: str
    split: str  # how the published numbers were split


SOURCES = {
    "biolangfusion": Source(
        "biolangfusion", "BioLangFusion: Multimodal Fusion of DNA, mRNA, and Protein Language "
        "Models (2025), Table 1", "the paper's own splits"),
    "bridging": Source(
        "bridging", "Bridging biomolecular modalities for knowledge transfer in bio-language "
        "models (2024), Table 1", "the paper's own splits"),
    "codonbert": Source(
        "codonbert", "Li et al., CodonBERT: large language models for mRNA vaccines, Genome "
        "Research 34 (2024), Table 2", "CodonBERT's 70/15/15 splits (the Split column of its "
        "benchmark tables)"),
    "isoformer": Source(
        "isoformer", "Garau-Luis et al., Multi-modal transfer learning between biological "
        "foundation models (IsoFormer), NeurIPS 2024: Table 8 (DNA encoders, DNA + RNA + protein) "
        "and Table 4 (aggregation ablations); Spearman on its transcript isoform expression task",
        "the paper's own splits"),
}


def reference_key(name: str) -> str:
    """Dataset names compared loosely: 'CoV-Vac', 'cov_vac' and 'covvac' are one dataset."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def load_references(names: list[str] | tuple[str, ...] = ("all",)) -> pl.DataFrame:
    """The reference rows of the shipped sources named (``all`` = every one) and of user CSV
    files, with a ``key`` column (the dataset name as :func:`reference_key` compares it)."""
    frames = []
    for name in names:
        if name == "all":
            frames += [_read(HERE / f"{s}.csv") for s in SOURCES]
        elif name in SOURCES:
            frames.append(_read(HERE / f"{name}.csv"))
        elif Path(name).exists():
            frames.append(_read(Path(name)))
        else:
            raise ConfigError(f"--reference {name!r} is neither a shipped reference "
                              f"({', '.join(SOURCES)}, all) nor a CSV file.",
                              "Pass one of those names, or a CSV with the columns "
                              f"{', '.join(COLUMNS)}.")
    out = pl.concat(frames) if frames else pl.DataFrame(schema=dict.fromkeys(COLUMNS, pl.String))
    return out.with_columns(pl.col("dataset").map_elements(reference_key, return_dtype=pl.String)
                            .alias("key")).unique(maintain_order=True)


def _read(path: Path) -> pl.DataFrame:
    raw = read_bytes(path, "reference file", f"Pass a CSV with the columns {', '.join(COLUMNS)}.")
    try:
        frame = pl.read_csv(io.BytesIO(raw), infer_schema_length=0)
    except Exception as exc:
        raise ConfigError(f"The reference file {path} cannot be read as CSV ({exc}).",
                          f"Give it the columns {', '.join(COLUMNS)}.") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"The reference file {path} lacks the column(s) {', '.join(missing)}.",
                          f"Its columns must be {', '.join(COLUMNS)} (one row per number).")
    frame = frame.select(COLUMNS).with_columns(pl.col("value").cast(pl.Float64, strict=False),
                                               pl.col("metric").str.to_lowercase())
    bad = frame.filter(pl.col("value").is_null())
    if bad.height:
        raise ConfigError(f"The reference file {path} has {bad.height} row(s) whose value is not "
                          f"a number (first: {bad.row(0)}).", "Give every value as a number.")
    return frame
