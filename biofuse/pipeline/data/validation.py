"""The validation report of a dataset: what was read, kept, dropped and why, for people and machines.

Each step of reading a table (sequences, labels, splits, duplicates) returns the rows it drops as
:class:`Drop` records; ``load_dataset`` applies them in order and the :class:`Report` counts them
under their reasons, with a few examples each.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from biofuse.pipeline.data import dogma

MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Drop:
    """Row ``row`` (0-based in the table) leaves the dataset for ``reason``."""

    row: int
    reason: str
    detail: str = ""


@dataclass
class Report:
    """What happened to every row. ``format_report`` renders it; ``to_dict`` is the JSON form."""

    path: str
    format: str
    separator: str | None
    rows_read: int
    rows_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    drop_examples: dict[str, list[str]] = field(default_factory=dict)
    columns: dict[str, object] = field(default_factory=dict)
    normalised: dict[str, int] = field(default_factory=dict)
    orf_policy: str = dogma.DEFAULT_ORF_POLICY
    genetic_code: int = 1
    coding_notes: dict[str, int] = field(default_factory=dict)
    lengths: dict[str, dict[str, float]] = field(default_factory=dict)
    task: str | None = None
    task_reason: str = ""
    labels: dict[str, dict[str, object]] = field(default_factory=dict)
    split_source: str = ""
    split_sizes: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, object] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    dataset_hash: str = ""

    def drop(self, reason: str, row: int, detail: str = "") -> None:
        """Count row ``row`` (0-based) as dropped for ``reason``; keep a few examples."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        examples = self.drop_examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(f"row {row + 1}" + (f": {detail}" if detail else ""))

    def record(self, drops: list[Drop]) -> None:
        for d in drops:
            self.drop(d.reason, d.row, d.detail)

    def to_dict(self) -> dict:
        return asdict(self)


_SEP_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}


def format_report(r: Report) -> str:
    """A plain-text report, one section per concern."""
    out: list[str] = []
    how = r.format + (f", {_SEP_NAMES.get(r.separator, repr(r.separator))}-separated"
                      if r.separator else "")
    out.append(f"{r.path}  ({how})")
    out.append(f"  rows read {r.rows_read}, kept {r.rows_kept}, dropped {r.rows_read - r.rows_kept}")
    for reason, n in r.dropped.items():
        out.append(f"    dropped {n:>6}  {reason}")
        for ex in r.drop_examples.get(reason, []):
            out.append(f"                    {ex}")
    c = r.columns
    out.append("columns")
    for role in ("sequence", "dna", "protein", "labels", "split", "id", "group"):
        value = c.get(role)
        if value:
            auto = " (auto-detected)" if role.rstrip("s") in c.get("auto_detected", []) else ""
            shown = ", ".join(value) if isinstance(value, list) else value
            out.append(f"  {role:<9} {shown}{auto}")
    if c.get("unused"):
        out.append(f"  unused    {', '.join(map(str, c['unused']))}")
    if r.normalised:
        out.append("normalised")
        for what, n in r.normalised.items():
            out.append(f"  {n:>6} rows  {what}")
    out.append(f"codon grid   ORF policy '{r.orf_policy}', genetic code {r.genetic_code}: "
               "one protein token per codon")
    for what, n in r.coding_notes.items():
        out.append(f"  {n:>6} rows  {what}")
    out.append("lengths      rows      min       p5   median      p95      max")
    for m, s in r.lengths.items():
        out.append(f"  {m:<8} {s['rows']:>8} {s['min']:>8} {s['p5']:>8.0f} {s['median']:>8.0f} "
                   f"{s['p95']:>8.0f} {s['max']:>8}")
    if r.task:
        out.append(f"task         {r.task}: {r.task_reason}")
    for name, s in r.labels.items():
        if "classes" in s:
            classes = ", ".join(f"{k}: {v}" for k, v in s["classes"].items())
            out.append(f"  {name}: classes {classes}; missing {s['missing']}")
        elif s.get("n"):
            out.append(f"  {name}: n {s['n']}, mean {s['mean']:.4g}, std {s['std']:.4g}, "
                       f"range [{s['min']:.4g}, {s['max']:.4g}], missing {s['missing']}")
    sizes = ", ".join(f"{k} {v}" for k, v in r.split_sizes.items())
    out.append(f"splits       {sizes}  ({r.split_source})")
    d = r.duplicates
    if d:
        out.append(f"duplicates   {d['identical_inputs_total']} rows repeat an earlier row's input; "
                   f"{d['inputs_in_several_splits']} inputs occur in more than one split "
                   f"({d['rows_involved']} rows)")
        for ex in d.get("examples", []):
            out.append(f"  {' = '.join(ex)}")
    for w in r.warnings:
        out.append(f"warning: {w}")
    out.append(f"dataset hash {r.dataset_hash}")
    return "\n".join(out)
