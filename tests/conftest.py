"""Shared fixtures: the real benchmark tables (skipped when absent) and small table writers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BIOFUSE_SHARED_DATA", REPO.parent / "shared" / "data"))

REAL_TABLES = {
    "cov_vac": SHARED_DATA / "cov_vac_degradation" / "CoV_Vaccine_Degradation.csv",
    "mrfp": SHARED_DATA / "mrfp_expression" / "mRFP_Expression.csv",
    "mlos": SHARED_DATA / "mlos" / "MLOS.csv",
}


@pytest.fixture
def real_table():
    """Path of a real CodonBERT benchmark table by name; skips the test when it is absent."""

    def get(name: str) -> Path:
        path = REAL_TABLES[name]
        if not path.exists():
            pytest.skip(f"real data not present at {path}")
        return path

    return get


@pytest.fixture
def write(tmp_path):
    """Write text or bytes to a file in the test's temp dir and return its path."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        return path

    return _write
