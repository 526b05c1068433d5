"""Experiment files: a TOML file that names datasets, encoders and fit grids, validated whole.

```toml
name = "codon-fusion"            # default: the file's name
seeds = [0, 1, 2]                # default seeds of every fit grid

[datasets.cov_vac]               # any DataSpec field (the `biofuse data inspect` options)
path = "CoV_Vaccine_Degradation.csv"   # relative to this file
sequence_col = "Sequence"
label_cols = ["Value"]
split_col = "Split"
split_from = "codonbert"         # the split column is that reference's split (for reports)

[encoders]                       # modality -> one encoder or a list (a grid axis)
rna = ["onehot", "onehot_codon"]

[extract]                        # ExtractOptions (dtype, batch_tokens, long_policy, ...)

[[fit]]                          # one grid; a list is an axis, a scalar is fixed
fusion = ["concat", "mil"]
lr = [1e-3, 3e-3]
mil = { dim = [128, 600] }       # a method's own options, in a table named after it

[[finetune]]                     # optional: encoders trained end to end (FinetuneOptions)
modality = "protein"
model = "esm2_t12_35M"
method = ["lora", "full"]
lora_rank = [16, 64]             # an axis; full finetunes ignore it (one run each)
```

:func:`load_experiment` reports every problem of the file at once (unknown keys with the closest
known one, missing files, unreadable tables, unknown encoders / fusions / heads, out-of-range
options) as one :class:`ExperimentError`; nothing runs until the file is clean.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biofuse.errors import BiofuseError, ConfigError
from biofuse.files import check_name, read_text
from biofuse.options import from_dict, option_fields
from biofuse.pipeline.data import Dataset, DataSpec, load_dataset
from biofuse.pipeline.experiment.grid import (
    Problems,
    encoder_lists,
    seeds_of,
    store_ids,
    table_of,
)
from biofuse.pipeline.experiment.tasks import KINDS, Search, Task, expand
from biofuse.pipeline.extract import ExtractOptions

TOP_KEYS = ("name", "out", "cache", "seeds", "datasets", "encoders", "extract", "fit",
            "finetune")
DATASET_KEYS = tuple(f.name for f in dataclasses.fields(DataSpec) if f.name != "labels") + (
    "reference", "split_from")
#: [extract] keys: every ExtractOptions field but the model, which [encoders] names
EXTRACT_KEYS = tuple(f.name for f in option_fields(ExtractOptions) if f.name != "model")


class ExperimentError(ConfigError):
    """Everything wrong with an experiment file, at once."""

    def __init__(self, path: Path, problems: list[str]):
        self.problems = problems
        super().__init__(f"{path} has {len(problems)} problem{'s' * (len(problems) > 1)}: "
                         + " ".join(f"({i}) {p}" for i, p in enumerate(problems, 1)),
                         "Fix them and run again; nothing was run. docs/experiments.md has a "
                         "complete annotated example.")


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    spec: DataSpec
    reference: str  # the dataset's name in reference tables (default: its own name)
    split_from: str | None  # the reference source whose split the table's split column holds


@dataclass
class Experiment:
    path: Path
    name: str
    out: Path
    cache: Path | None
    datasets: dict[str, DatasetEntry]
    extract: dict[str, Any]
    tasks: list[Task]
    loaded: dict[str, Dataset] = field(default_factory=dict, repr=False)
    searches: list[Search] = field(default_factory=list)  # [[fit]]s with distributions

    def extract_options(self, model: str) -> ExtractOptions:
        return from_dict(ExtractOptions, {**self.extract, "model": model})


def load_experiment(path: str | Path, *, out: str | Path | None = None,
                    cache: str | Path | None = None, load_data: bool = True) -> Experiment:
    """Read and validate an experiment file; raise :class:`ExperimentError` listing every
    problem. ``out`` / ``cache`` override the file's. Paths in the file are relative to it."""
    path = Path(path)
    text = read_text(path, "experiment file", "Pass a TOML file; "
                     "`biofuse/examples/experiment.toml` is a complete example "
                     "(docs/experiments.md explains it).")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}).",
                          "Fix the place it names; docs/experiments.md has a complete "
                          "example.") from None
    base = path.parent
    p = Problems()
    p.unknown_keys("top level", doc, TOP_KEYS)
    for key in ("name", "out", "cache"):  # text (a name, a folder); anything else is a problem
        if key in doc and not isinstance(doc[key], str):
            p.add(f"top level: {key} = {doc[key]!r} is not text")
            doc = {k: v for k, v in doc.items() if k != key}
    cache_dir = Path(cache) if cache is not None else (
        base / str(doc["cache"]) if "cache" in doc else None)
    cache_dir = cache_dir.resolve() if cache_dir is not None else None
    p.store_ids = store_ids(cache_dir)
    seeds = seeds_of(doc.get("seeds", [0]), "seeds", p)
    datasets = _datasets(doc.get("datasets"), base, p)
    encoders = encoder_lists(doc.get("encoders", {}), "[encoders]", base, p)
    extract = table_of(doc.get("extract", {}), "[extract]", p)
    p.unknown_keys("[extract]", extract, EXTRACT_KEYS)
    if not any(k not in EXTRACT_KEYS for k in extract):
        try:
            from_dict(ExtractOptions, extract)
        except BiofuseError as exc:
            p.add(f"[extract]: {exc}")
    tables = {"fit": _tables(doc.get("fit", [] if "finetune" in doc else [{}]), "fit", p),
              "finetune": _tables(doc.get("finetune", []), "finetune", p)}
    tasks: list[Task] = []
    for kind, kind_tables in tables.items():
        for i, table in enumerate(kind_tables, 1):
            tasks += expand(KINDS[kind], table, i, datasets, seeds, base, p, encoders)
    if datasets and any(tables.values()) and not tasks and not p.items:
        p.add("the grid is empty: no [[fit]] table applies to any dataset")
    loaded = {}
    if load_data:
        for name, entry in datasets.items():
            try:
                loaded[name] = load_dataset(entry.spec)
            except BiofuseError as exc:
                p.add(f"[datasets.{name}]: {exc.problem}")
                continue
            if not loaded[name].label_names:
                p.add(f"[datasets.{name}]: no label column was found in {entry.spec.path}, so "
                      "there is nothing to fit (name it with label_cols = [\"...\"])")
    if p.items:
        raise ExperimentError(path, p.items)
    unique, searches = Search.group(list({t.canonical(): t for t in tasks}.values()))
    out_dir = (Path(out) if out is not None else base / str(doc.get("out", path.stem))).resolve()
    return Experiment(path, str(doc.get("name", path.stem)), out_dir, cache_dir, datasets,
                      extract, unique, loaded, searches)


def _tables(value: Any, key: str, p: Problems) -> list[dict]:
    value = [value] if isinstance(value, dict) else value
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        p.add(f"'{key}' must be a table ([{key}]) or a list of tables ([[{key}]])")
        return []
    return value


def _datasets(value: Any, base: Path, p: Problems) -> dict[str, DatasetEntry]:
    if value is None:
        p.add("no [datasets.NAME] table: name at least one dataset (path = ..., and its "
              "column options)")
        return {}
    out = {}
    for name, table in table_of(value, "[datasets]", p).items():
        where = f"[datasets.{name}]"
        try:
            check_name(name, "The dataset name")  # it names the folder of its runs
        except BiofuseError as exc:
            p.add(f"{where}: {exc}")
            continue
        if not isinstance(table, dict):
            p.add(f"{where} must be a table (path = ..., sequence_col = ...)")
            continue
        p.unknown_keys(where, table, DATASET_KEYS)
        if "path" not in table:
            p.add(f"{where}: no path")
            continue
        if not isinstance(table["path"], str):
            p.add(f"{where}: path = {table['path']!r} is not text (a file name)")
            continue
        fields = {k: v for k, v in table.items() if k in DATASET_KEYS[:-2]}
        fields["path"] = str(base / str(table["path"]))
        if isinstance(fields.get("label_cols"), str):
            fields["label_cols"] = [fields["label_cols"]]
        if not Path(fields["path"]).is_file():
            p.add(f"{where}: the table {fields['path']} does not exist")
            continue
        split_from = table.get("split_from")
        from biofuse.references import SOURCES

        if split_from is not None and split_from not in SOURCES:
            p.add(f"{where}: split_from = {split_from!r} is not a reference source "
                  f"({', '.join(SOURCES)})")
        try:
            spec = from_dict(DataSpec, fields)
        except (BiofuseError, TypeError) as exc:
            p.add(f"{where}: {exc}")
            continue
        out[name] = DatasetEntry(name, spec, str(table.get("reference", name)), split_from)
    return out
