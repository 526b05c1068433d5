"""Reading users' files into a polars DataFrame: CSV, TSV, Parquet and FASTA, gzip or not.

Delimited text is read with every column as a string, so labels and sequences are typed by
biofuse's own rules (see :mod:`biofuse.pipeline.data.dataset`) rather than by a guess on the first rows.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from biofuse.errors import ConfigError, DataError
from biofuse.files import read_bytes

FASTA_SUFFIXES = {".fa", ".fasta", ".fna", ".faa", ".ffn", ".frn", ".fas"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
TAB_SUFFIXES = {".tsv", ".tab"}
_SEPARATORS = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}


@dataclass(frozen=True)
class TableInfo:
    """How a file was read: its format, the separator used, whether it was gzipped."""

    format: str
    separator: str | None
    gzipped: bool


def read_table(path: str | Path, sep: str | None = None) -> tuple[pl.DataFrame, TableInfo]:
    """Read ``path`` into a DataFrame; raise :class:`DataError` with a fix for unreadable files."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise DataError(f"No such file: {path}.", "Check the path, or run from the folder it is in.")
    try:
        raw = read_bytes(path, "table", "Pass a CSV, TSV, Parquet or FASTA file (gzipped or not).")
    except ConfigError as exc:  # a directory, a FIFO, a device, a dangling link
        raise DataError(exc.problem, exc.fix) from None
    gzipped = raw[:2] == b"\x1f\x8b"
    if gzipped:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path} looks gzipped but cannot be decompressed ({exc}).",
                            "Re-create the file with gzip, or pass the uncompressed file.") from exc
    if not raw.strip():
        raise DataError(f"{path} is empty.", "Pass a file with a header line and data rows.")
    suffix = _suffix(path)
    if suffix in PARQUET_SUFFIXES or raw[:4] == b"PAR1":
        return _read_parquet(path, raw), TableInfo("parquet", None, gzipped)
    text = _decode(path, raw)
    if suffix in FASTA_SUFFIXES or text.lstrip().startswith(">"):
        return _read_fasta(path, text), TableInfo("fasta", None, gzipped)
    if sep is None:
        sep = "\t" if suffix in TAB_SUFFIXES else sniff_separator(text)
    return _read_delimited(path, text, sep), TableInfo("delimited", sep, gzipped)


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".gzip"):
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _decode(path: Path, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path} is not valid UTF-8: byte 0x{raw[exc.start]:02x} on line {line} cannot be decoded.",
            "Re-save the file as UTF-8 (for example `iconv -f latin1 -t utf-8 IN > OUT`).") from exc
    return text.removeprefix("\ufeff")


def sniff_separator(text: str) -> str:
    """The separator that occurs most often in the header line (comma when none does)."""
    header = text.lstrip("\r\n").split("\n", 1)[0]
    counts = {s: header.count(s) for s in _SEPARATORS}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] else ","


def _read_delimited(path: Path, text: str, sep: str) -> pl.DataFrame:
    if len(sep) != 1 or sep in "\r\n\"":
        raise DataError(f"--sep {sep!r} is not a single field-separator character.",
                        "Use e.g. --sep ',' or --sep $'\\t', or omit --sep to detect it.")
    try:
        df = pl.read_csv(io.StringIO(text), separator=sep, infer_schema=False,
                         truncate_ragged_lines=False)
    except pl.exceptions.PolarsError as exc:
        name = _SEPARATORS.get(sep, repr(sep))
        raise DataError(
            f"{path} cannot be read as a {name}-separated table: {str(exc).splitlines()[0]}",
            "Check that every row has as many fields as the header, that sequences with commas "
            "are quoted, or pass --sep to name the separator.") from exc
    if df.height == 0:
        raise DataError(f"{path} has a header but no data rows.", "Add data rows below the header.")
    return df


def _read_parquet(path: Path, raw: bytes) -> pl.DataFrame:
    try:
        df = pl.read_parquet(io.BytesIO(raw))
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{path} cannot be read as Parquet: {str(exc).splitlines()[0]}",
                        "Check that the file was fully written (not truncated).") from exc
    if df.height == 0:
        raise DataError(f"{path} has no rows.", "Pass a table with data rows.")
    return df


def _read_fasta(path: Path, text: str) -> pl.DataFrame:
    """FASTA records; ``key=value`` words in a header become columns."""
    records: list[dict[str, str]] = []
    chunks: list[str] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            if records:
                records[-1]["sequence"] = "".join(chunks)
            chunks = []
            words = line[1:].split()
            if not words:
                raise DataError(f"{path}: the FASTA header on line {lineno} has no identifier.",
                                "Give every record a header such as `>seq1 label=0.5`.")
            rec = {"id": words[0]}
            for word in words[1:]:
                key, eq, value = word.partition("=")
                if eq and key:
                    rec[key] = value
            records.append(rec)
        else:
            if not records:
                raise DataError(f"{path}: sequence on line {lineno} comes before any '>' header.",
                                "Start the file with a header line such as `>seq1`.")
            chunks.append(line)
    if not records:
        raise DataError(f"{path} holds no FASTA records.", "Add records such as `>seq1 label=0.5`.")
    records[-1]["sequence"] = "".join(chunks)
    columns = list(dict.fromkeys(k for rec in records for k in rec))
    return pl.DataFrame({c: [rec.get(c) for rec in records] for c in columns},
                        schema={c: pl.String for c in columns})
