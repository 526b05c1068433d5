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
import itertools
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biofuse.errors import BiofuseError, ConfigError
from biofuse.fusion import FUSIONS
from biofuse.heads import HEADS
from biofuse.modality import Modality
from biofuse.options import from_dict, option_fields
from biofuse.pipeline.data import Dataset, DataSpec, load_dataset
from biofuse.pipeline.extract import ExtractOptions
from biofuse.pipeline.finetune_grid import FinetuneTask, expand_finetune
from biofuse.pipeline.fit import FitOptions, unused_search_fields
from biofuse.pipeline.grid import (
    Problems,
    checked_names,
    encoder_name,
    grid,
    jsonable,
    open_table,
    seeds_of,
    store_ids,
    table_of,
    tuple_fields,
)

TOP_KEYS = ("name", "out", "cache", "seeds", "datasets", "encoders", "extract", "fit",
            "finetune")
DATASET_KEYS = tuple(f.name for f in dataclasses.fields(DataSpec) if f.name != "labels") + (
    "reference", "split_from")
#: [extract] keys: every ExtractOptions field but the model, which [encoders] names
EXTRACT_KEYS = tuple(f.name for f in option_fields(ExtractOptions) if f.name != "model")
#: FitOptions fields a [[fit]] table sets directly (methods' options go in their own tables)
FIT_FIELDS = tuple(f.name for f in option_fields(FitOptions)
                   if f.name not in ("encoders", "fusion_options", "head_options", "threads"))
FIT_KEYS = (*FIT_FIELDS, "name", "datasets", "encoders", *sorted(FUSIONS), *sorted(HEADS))



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


@dataclass(frozen=True)
class FitTask:
    """One fit of the grid: a dataset, FitOptions values, and an encoder per modality."""

    dataset: str
    group: str  # the [[fit]] table's name
    options: dict[str, Any] = field(hash=False)  # FitOptions keyword arguments, encoders aside
    encoders: dict[str, str] = field(hash=False)  # modality -> encoder name / dir / store id

    kind = "fit"

    def fit_options(self, **extra: Any) -> FitOptions:
        return from_dict(FitOptions, {**self.options, "encoders": self.encoders, **extra})

    resolved = fit_options

    @property
    def method(self) -> str:
        """What the results tables call the way the model was made: the fusion."""
        return self.options["fusion"]

    @property
    def modalities(self) -> list[str]:
        return self.options["modalities"]

    def canonical(self) -> str:
        return json.dumps([self.dataset, self.options, self.encoders], sort_keys=True,
                          default=list)


@dataclass
class Experiment:
    path: Path
    name: str
    out: Path
    cache: Path | None
    datasets: dict[str, DatasetEntry]
    extract: dict[str, Any]
    tasks: list[FitTask | FinetuneTask]
    loaded: dict[str, Dataset] = field(default_factory=dict, repr=False)

    def extract_options(self, model: str) -> ExtractOptions:
        return from_dict(ExtractOptions, {**self.extract, "model": model})


def load_experiment(path: str | Path, *, out: str | Path | None = None,
                    cache: str | Path | None = None, load_data: bool = True) -> Experiment:
    """Read and validate an experiment file; raise :class:`ExperimentError` listing every
    problem. ``out`` / ``cache`` override the file's. Paths in the file are relative to it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"The experiment file {path} does not exist.",
                          "Pass a TOML file; `biofuse/examples/experiment.toml` is a complete "
                          "example (docs/experiments.md explains it).")
    try:
        doc = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}).",
                          "Fix the place it names; docs/experiments.md has a complete "
                          "example.") from None
    base = path.parent
    p = Problems()
    p.unknown_keys("top level", doc, TOP_KEYS)
    cache_dir = Path(cache) if cache is not None else (
        base / str(doc["cache"]) if "cache" in doc else None)
    cache_dir = cache_dir.resolve() if cache_dir is not None else None
    p.store_ids = store_ids(cache_dir)
    seeds = seeds_of(doc.get("seeds", [0]), "seeds", p)
    datasets = _datasets(doc.get("datasets"), base, p)
    encoders = _encoder_lists(doc.get("encoders", {}), "[encoders]", base, p)
    extract = table_of(doc.get("extract", {}), "[extract]", p)
    p.unknown_keys("[extract]", extract, EXTRACT_KEYS)
    if not any(k not in EXTRACT_KEYS for k in extract):
        try:
            from_dict(ExtractOptions, extract)
        except BiofuseError as exc:
            p.add(f"[extract]: {exc}")
    fits = _tables(doc.get("fit", [] if "finetune" in doc else [{}]), "fit", p)
    tasks: list[FitTask | FinetuneTask] = []
    for i, table in enumerate(fits, 1):
        tasks += _expand(table, i, datasets, encoders, seeds, base, p)
    finetunes = _tables(doc.get("finetune", []), "finetune", p)
    for i, table in enumerate(finetunes, 1):
        tasks += expand_finetune(table, i, datasets, seeds, base, p)
    fits += finetunes
    if datasets and fits and not tasks and not p.items:
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
    unique = list({t.canonical(): t for t in tasks}.values())
    out_dir = (Path(out) if out is not None else base / str(doc.get("out", path.stem))).resolve()
    return Experiment(path, str(doc.get("name", path.stem)), out_dir, cache_dir, datasets,
                      extract, unique, loaded)


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
        if not isinstance(table, dict):
            p.add(f"{where} must be a table (path = ..., sequence_col = ...)")
            continue
        p.unknown_keys(where, table, DATASET_KEYS)
        if "path" not in table:
            p.add(f"{where}: no path")
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


def _encoder_lists(value: Any, where: str, base: Path, p: Problems) -> dict[Modality, list[str]]:
    table = table_of(value, where, p)
    p.unknown_keys(where, table, tuple(str(m) for m in Modality))
    out = {}
    for key, names in table.items():
        try:
            m = Modality.parse(key)
        except BiofuseError:
            continue
        names = names if isinstance(names, list) else [names]
        if not names or not all(isinstance(n, str) and n for n in names):
            p.add(f"{where}: {key} = {names!r} must be an encoder name or a list of them")
            continue
        out[m] = [encoder_name(n, m, f"{where} {key}", base, p) for n in names]
    return out


def _expand(table: dict, index: int, datasets: dict[str, DatasetEntry],
            encoders: dict[Modality, list[str]], seeds: list[int], base: Path,
            p: Problems) -> list[FitTask]:
    name, where, ok = open_table("fit", table, index, FIT_KEYS, p)
    if not ok:
        return []
    fusions = checked_names(table.get("fusion", FitOptions.fusion), FUSIONS, f"{where} fusion", p)
    heads = checked_names(table.get("head", "textcnn"), HEADS, f"{where} head", p)
    for method in [*FUSIONS, *HEADS]:
        if method in table:
            if not isinstance(table[method], dict):
                p.add(f"{where}: {method} must be a table of {method}'s options")
            elif method not in fusions and method not in heads:
                p.add(f"{where}: options for {method}, but this grid runs "
                      f"{', '.join(fusions + heads)}")
            else:
                cls = {**FUSIONS, **HEADS}[method].Options
                p.unknown_keys(f"{where} {method}", table[method],
                               tuple(f.name for f in option_fields(cls)))
    own = _encoder_lists(table.get("encoders", {}), f"{where} encoders", base, p)
    wanted = checked_names(table.get("datasets", list(datasets)), datasets, f"{where} datasets", p)
    if "seed" in table:
        seeds_of(table["seed"], f"{where} seed", p)
    fit_fields = {k: v for k, v in tuple_fields(FitOptions).items() if k in FIT_FIELDS}
    base_grid = grid({**table, "seed": table.get("seed", seeds)}, fit_fields)
    tasks = []
    for fusion, head in itertools.product(fusions, heads):
        f_cls, h_cls = FUSIONS[fusion].Options, HEADS[head].Options
        f_opts = grid(table.get(fusion, {}) if isinstance(table.get(fusion), dict) else {},
                       tuple_fields(f_cls))
        h_opts = grid(table.get(head, {}) if isinstance(table.get(head), dict) else {},
                       tuple_fields(h_cls))
        for opts, fo, ho in itertools.product(base_grid, f_opts, h_opts):
            options = {**opts, "fusion": fusion, "head": head, "fusion_options": fo,
                       "head_options": ho}
            for unused in unused_search_fields(fusion):  # so an axis of them does not
                options.pop(unused, None)  # repeat the fits of fusions that ignore them
            try:
                resolved = from_dict(FitOptions, options)
            except BiofuseError as exc:
                p.add(f"{where}: {exc}")
                continue
            options["modalities"] = [str(m) for m in resolved.modalities]
            per_modality = [[(str(m), e) for e in own.get(m) or encoders.get(m)
                             or [m.default_encoder]] for m in resolved.modalities]
            for combo in itertools.product(*per_modality):
                for ds in wanted:
                    tasks.append(FitTask(ds, name, jsonable(options), dict(combo)))
    return tasks
