"""The tasks of an experiment: ``[[fit]]`` and ``[[finetune]]`` tables expanded into grids, by
one expander.

A table sets options of its kind (FitOptions or FinetuneOptions); a list is an axis, a scalar is
fixed. Its methods (fusion and head for a fit, head for a finetune) are axes too, and each
method's own options sit in a table named after it (``mil = { dim = [128, 600] }``). Every
combination, seed and dataset is one :class:`Task`. What a kind adds (a fit's encoder per
modality; a finetune's encoder check) is one hook of its :class:`GridKind`.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from biofuse.errors import BiofuseError
from biofuse.fusion import FUSIONS
from biofuse.heads import HEADS
from biofuse.modality import Modality
from biofuse.options import canonical_names, from_dict, option_fields
from biofuse.pipeline.experiment.grid import (
    Problems,
    axis,
    checked_names,
    encoder_lists,
    encoder_name,
    grid,
    jsonable,
    open_table,
    seeds_of,
    tuple_fields,
)
from biofuse.pipeline.experiment.space import (
    Distribution,
    SearchSettings,
    apply,
    for_task,
    split_space,
)
from biofuse.pipeline.finetune.options import FINETUNABLE, FinetuneOptions
from biofuse.pipeline.train.options import FitOptions, unused_search_fields
from biofuse.registry import Registry


@dataclass(frozen=True)
class Task:
    """One run of the grid: a fit or a finetune (``kind``) on a dataset, with its options."""

    kind: str  # "fit" | "finetune"
    dataset: str
    group: str  # the [[fit]] / [[finetune]] table's name
    options: dict[str, Any] = field(hash=False)  # the kind's options as keyword arguments
    given_encoders: dict[str, str] = field(default_factory=dict, hash=False)  # fit: modality ->
    # encoder name / directory / cache store id
    #: a search's distributions (path -> Distribution; space.py), the options holding their
    #: lower ends; empty for a grid's task
    space: dict[str, Distribution] = field(default_factory=dict, hash=False)
    search: SearchSettings | None = field(default=None, hash=False)

    @property
    def grid_kind(self) -> GridKind:
        return KINDS[self.kind]

    def resolved(self, **extra: Any) -> FitOptions | FinetuneOptions:
        """The options object (every default filled in); ``extra`` overrides, e.g. threads."""
        given = {"encoders": self.given_encoders} if self.kind == "fit" else {}
        return from_dict(self.grid_kind.options, {**self.options, **given, **extra})

    @property
    def method(self) -> str:
        """What the results tables call the way the model was made: the fusion, or
        finetune-lora / finetune-full."""
        if self.kind == "fit":
            return self.options["fusion"]
        return f"finetune-{self.options.get('method', FinetuneOptions.method)}"

    @property
    def modalities(self) -> list[str]:
        return self.options["modalities"] if self.kind == "fit" else [self.options["modality"]]

    @property
    def encoders(self) -> dict[str, str]:
        """Modality -> encoder of every modality the task reads."""
        if self.kind == "fit":
            return self.given_encoders
        return {self.options["modality"]: self.resolved().encoder_model}

    def canonical(self) -> str:
        """Equal for two tasks that would run the same thing (duplicates are run once)."""
        space = {k: d.describe() for k, d in self.space.items()}
        if self.kind == "fit":
            return json.dumps([self.dataset, self.options, self.given_encoders, space],
                              sort_keys=True, default=list)
        return json.dumps(["finetune", self.dataset, self.options, space], sort_keys=True,
                          default=list)

    def with_params(self, params: dict[str, Any], **options: Any) -> Task:
        """This task with sampled values in place of its distributions (a trial, or a search's
        best configuration), and ``options`` (a seed) set: a plain task of the grid."""
        return replace(self, options={**apply(self.options, params), **options}, space={},
                       search=None)


@dataclass(frozen=True)
class Search:
    """One search of an experiment: a task whose options hold distributions (space.py), and the
    seeds its best configuration is re-run with. Its trials train with the first seed."""

    task: Task
    seeds: list[int]

    @staticmethod
    def group(tasks: list[Task]) -> tuple[list[Task], list[Search]]:
        """The grid's tasks, and the searches the others make (one per configuration, its
        seeds gathered)."""
        grid_tasks, groups = [], {}
        for t in tasks:
            if not t.space:
                grid_tasks.append(t)
                continue
            key = replace(t, options={k: v for k, v in t.options.items() if k != "seed"})
            groups.setdefault(key.canonical(), []).append(t)
        return grid_tasks, [Search(ts[0], [t.options.get("seed", 0) for t in ts])
                            for ts in groups.values()]


@dataclass(frozen=True)
class GridKind:
    """What a ``[[kind]]`` table can hold and how its combinations become tasks."""

    name: str
    options: type  # the options dataclass (FitOptions, FinetuneOptions)
    methods: dict[str, Registry]  # method field -> its registry ("fusion" -> FUSIONS, ...)
    #: kind-specific expansion of one resolved combination into tasks (or problems)
    tasks: Callable[..., list[Task]]
    extra_keys: tuple[str, ...] = ()  # keys other than options, methods and their tables
    #: (method field, the table) -> the method(s) when the table names none; None: let the
    #: options resolve it for each combination
    default: Callable[[str, dict], Any] = lambda field, table: None

    @property
    def fields(self) -> tuple[str, ...]:
        """Option fields a table sets directly (a method's options go in its own table)."""
        nested = {f"{m}_options" for m in self.methods} | {"encoders", "threads"}
        return tuple(f.name for f in option_fields(self.options) if f.name not in nested)

    @property
    def keys(self) -> tuple[str, ...]:
        aliases = tuple(a for f in option_fields(self.options) if f.name in self.fields
                        for a in f.metadata.get("aliases", ()))
        methods = tuple(n for registry in self.methods.values() for n in sorted(registry))
        return (*self.fields, *aliases, "name", "datasets", *self.extra_keys, *methods)


#: the most tasks one experiment file may expand to (docs/experiments.md); a larger grid is
#: refused before it is expanded, so a typo cannot fill the memory
MAX_TASKS = 100_000


def expand(kind: GridKind, table: dict, index: int, datasets: dict, seeds: list[int],
           base: Path, p: Problems, encoders: dict[Modality, list[str]] | None = None
           ) -> list[Task]:
    """The tasks of one ``[[kind]]`` table; problems are added to ``p``."""
    name, where, ok = open_table(kind.name, table, index, kind.keys, p)
    if not ok:
        return []
    try:
        table = canonical_names(kind.options, table)
    except BiofuseError as exc:
        p.add(f"{where}: {exc}")
        return []
    every = {n: registry[n] for registry in kind.methods.values() for n in registry}
    before = len(p.items)
    table, space, search = split_space(table, kind.fields, kind.options, every, where, p)
    if len(p.items) > before:
        return []
    # a method left out takes the kind's default; None: resolved per combination (a probe
    # head's fusion follows its modalities: none or concat)
    chosen = {}
    for f, registry in kind.methods.items():
        value = table[f] if f in table else kind.default(f, table)
        chosen[f] = [None] if value is None else checked_names(value, registry,
                                                                f"{where} {f}", p)
    in_use = [n for names in chosen.values() for n in names if n is not None]
    for method, cls in every.items():
        if method not in table:
            continue
        if not isinstance(table[method], dict):
            p.add(f"{where}: {method} must be a table of {method}'s options")
        elif method not in in_use:
            p.add(f"{where}: options for {method}, but this grid runs {', '.join(in_use)}")
        else:
            p.unknown_keys(f"{where} {method}", table[method],
                           tuple(f.name for f in option_fields(cls.Options)))
    if "encoders" in kind.extra_keys:  # a table's own encoders replace the file's, per modality
        encoders = {**(encoders or {}),
                    **encoder_lists(table.get("encoders", {}), f"{where} encoders", base, p)}
    wanted = checked_names(table.get("datasets", list(datasets)), datasets, f"{where} datasets", p)
    if "seed" in table:
        seeds_of(table["seed"], f"{where} seed", p)
    fields = {k: v for k, v in tuple_fields(kind.options).items() if k in kind.fields}
    values = {**table, "seed": table.get("seed", seeds)}
    tables = {m: (table[m] if isinstance(table.get(m), dict) else {}) for m in every}
    n = _count(values, fields, chosen, tables, every) * len(wanted) * math.prod(
        len(names) for names in (encoders or {}).values())
    if n > MAX_TASKS:
        p.add(f"{where}: the grid expands to about {n:,} runs; one experiment file runs at most "
              f"{MAX_TASKS:,} (split it into several files, or search instead of a grid)")
        return []
    tasks = []
    for combo in itertools.product(*chosen.values()):
        picked = dict(zip(kind.methods, combo))
        method_grids = [grid(tables[m], tuple_fields(every[m].Options)) if m else [{}]
                        for m in combo]
        for opts, *method_opts in itertools.product(grid(values, fields), *method_grids):
            options = {**opts, **picked,
                       **{f"{f}_options": mo for f, mo in zip(kind.methods, method_opts)}}
            tasks += kind.tasks(options, name, where, wanted, base, p, encoders or {})
    if space:
        tasks = [replace(t, space=for_task(space, t.options), search=search) for t in tasks]
    return tasks


def _count(values: dict, fields: dict, chosen: dict, tables: dict, every: dict) -> int:
    """How many combinations the table's options and methods make (counted, not expanded)."""
    def size(table: dict, table_fields: dict) -> int:
        return math.prod(len(axis(k, v, table_fields[k])) for k, v in table.items()
                         if k in table_fields)

    methods = sum(math.prod(size(tables[m], tuple_fields(every[m].Options)) for m in combo if m)
                  for combo in itertools.product(*chosen.values()))
    return size(values, fields) * methods


# ------------------------------------------------------------------------ the two kinds

def _fit_tasks(options: dict, name: str, where: str, datasets: list[str], base: Path,
               p: Problems, encoders: dict[Modality, list[str]]) -> list[Task]:
    try:
        if options.get("fusion") is None:  # follows the head; the task records what it is
            given = {m: e[0] for m, e in encoders.items()} if "modalities" not in options \
                else {}
            options["fusion"] = from_dict(FitOptions, {**options, "encoders": given}).fusion
        for unused in unused_search_fields(options["fusion"]):  # so an axis of them does not
            options.pop(unused, None)  # repeat the fits of fusions that ignore them
        resolved = from_dict(FitOptions, options)
    except BiofuseError as exc:
        p.add(f"{where}: {exc}")
        return []
    options["modalities"] = [str(m) for m in resolved.modalities]
    per_modality = [[(str(m), e) for e in encoders.get(m) or [m.default_encoder]]
                    for m in resolved.modalities]
    return [Task("fit", ds, name, jsonable(options), dict(combo))
            for combo in itertools.product(*per_modality) for ds in datasets]


def _finetune_tasks(options: dict, name: str, where: str, datasets: list[str], base: Path,
                    p: Problems, encoders: dict[Modality, list[str]]) -> list[Task]:
    from biofuse.pipeline.encoders import encoder_info

    try:
        resolved = from_dict(FinetuneOptions, options)
    except BiofuseError as exc:
        p.add(f"{where}: {exc}")
        return []
    modality = Modality.parse(resolved.modality)
    model = encoder_name(resolved.encoder_model, modality, f"{where} model", base, p)
    try:
        info = encoder_info(model, modality)
    except BiofuseError:
        info = None  # named as a problem by encoder_name already
    if info is not None and info.family not in FINETUNABLE:
        p.add(f"{where}: {model} is not a transformer encoder, so it cannot be finetuned (use a "
              "[[fit]] with fusion = \"none\" for its frozen embeddings)")
        return []
    options["model"] = model
    if resolved.method == "full":  # LoRA's options mean nothing to it: one run, not many
        for key in ("lora_rank", "lora_alpha", "lora_dropout"):
            options.pop(key, None)
    return [Task("finetune", ds, name, jsonable(options)) for ds in datasets]


def _fit_default(field: str, table: dict):
    """A [[fit]] without a fusion trains MIL, but one whose heads are all scikit-learn probes
    pools and concatenates (its fusion is resolved per combination); without a head, TextCNN."""
    if field == "head":
        return FitOptions.head
    heads = table.get("head", FitOptions.head)
    heads = heads if isinstance(heads, list) else [heads]
    probes = all(isinstance(h, str) and h in HEADS and HEADS[h].kind == "probe" for h in heads)
    return None if probes else "mil"


KINDS: dict[str, GridKind] = {
    "fit": GridKind("fit", FitOptions, {"fusion": FUSIONS, "head": HEADS}, _fit_tasks,
                    extra_keys=("encoders", "search"), default=_fit_default),
    "finetune": GridKind("finetune", FinetuneOptions, {"head": HEADS}, _finetune_tasks,
                         extra_keys=("search",),
                         default=lambda field, table: FinetuneOptions.head),
}
