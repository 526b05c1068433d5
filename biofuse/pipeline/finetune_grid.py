"""The ``[[finetune]]`` tables of an experiment file: grids of `biofuse finetune` runs, validated
with the rest of the file and run by `biofuse run` as tasks beside the fits."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biofuse.errors import BiofuseError
from biofuse.heads import HEADS
from biofuse.modality import Modality
from biofuse.options import from_dict, option_fields
from biofuse.pipeline.finetune import FINETUNABLE, FinetuneOptions
from biofuse.pipeline.grid import (
    Problems,
    checked_names,
    encoder_name,
    grid,
    jsonable,
    open_table,
    seeds_of,
    tuple_fields,
)

#: FinetuneOptions fields a [[finetune]] table sets directly (the head's options in its table)
FINETUNE_FIELDS = tuple(f.name for f in option_fields(FinetuneOptions)
                        if f.name not in ("head_options", "threads"))
FINETUNE_KEYS = (*FINETUNE_FIELDS, "name", "datasets", *sorted(HEADS))


@dataclass(frozen=True)
class FinetuneTask:
    """One finetune of the grid: a dataset and FinetuneOptions values."""

    dataset: str
    group: str  # the [[finetune]] table's name
    options: dict[str, Any] = field(hash=False)  # FinetuneOptions keyword arguments

    kind = "finetune"

    def resolved(self, **extra: Any) -> FinetuneOptions:
        return from_dict(FinetuneOptions, {**self.options, **extra})

    @property
    def method(self) -> str:
        return f"finetune-{self.options.get('method', FinetuneOptions.method)}"

    @property
    def modalities(self) -> list[str]:
        return [self.options["modality"]]

    @property
    def encoders(self) -> dict[str, str]:
        return {self.options["modality"]: self.resolved().encoder_model}

    def canonical(self) -> str:
        return json.dumps(["finetune", self.dataset, self.options], sort_keys=True, default=list)


def expand_finetune(table: dict, index: int, datasets: dict,
                     seeds: list[int], base: Path, p: Problems) -> list[FinetuneTask]:
    """A [[finetune]] grid: FinetuneOptions fields (a list is an axis), seeds, datasets, and the
    head's options in a table named after it."""
    name, where, ok = open_table("finetune", table, index, FINETUNE_KEYS, p)
    if not ok:
        return []
    heads = checked_names(table.get("head", "textcnn"), HEADS, f"{where} head", p)
    for head in HEADS:
        if head in table and head not in heads:
            p.add(f"{where}: options for {head}, but this grid runs {', '.join(heads)}")
    wanted = checked_names(table.get("datasets", list(datasets)), datasets,
                           f"{where} datasets", p)
    if "seed" in table:
        seeds_of(table["seed"], f"{where} seed", p)
    fields = {k: v for k, v in tuple_fields(FinetuneOptions).items() if k in FINETUNE_FIELDS}
    tasks = []
    for head in heads:
        head_table = table.get(head) if isinstance(table.get(head), dict) else {}
        for opts, ho in itertools.product(
                grid({**table, "seed": table.get("seed", seeds)}, fields),
                grid(head_table, tuple_fields(HEADS[head].Options))):
            options = {**opts, "head": head, "head_options": ho}
            try:
                resolved = from_dict(FinetuneOptions, options)
            except BiofuseError as exc:
                p.add(f"{where}: {exc}")
                continue
            modality = Modality.parse(resolved.modality)
            model = encoder_name(resolved.encoder_model, modality, f"{where} model", base, p)
            info = _registered(model, modality)
            if info is not None and info.family not in FINETUNABLE:
                p.add(f"{where}: {model} is not a transformer encoder, so it cannot be "
                      "finetuned (use a [[fit]] with fusion = \"none\" for its frozen "
                      "embeddings)")
                continue
            options["model"] = model
            if resolved.method == "full":  # LoRA's options mean nothing to it: one run, not many
                for key in ("lora_rank", "lora_alpha", "lora_dropout"):
                    options.pop(key, None)
            tasks += [FinetuneTask(ds, name, jsonable(options)) for ds in wanted]
    return tasks


def _registered(model: str, modality: Modality):
    from biofuse.pipeline.encoders import encoder_info

    try:
        return encoder_info(model, modality)
    except BiofuseError:
        return None  # named as a problem by encoder_name already
