"""Shared pieces of experiment-file validation and grid expansion: the list of problems found,
and how a table of values becomes a grid (a list is an axis)."""

from __future__ import annotations

import difflib
import itertools
import typing
from pathlib import Path
from typing import Any

from biofuse.errors import BiofuseError
from biofuse.modality import Modality
from biofuse.options import base_type, option_fields


class Problems:
    """The problems found so far, and what validation needs to know (the cache's store ids)."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.store_ids: set[str] = set()

    def add(self, message: str) -> None:
        if message not in self.items:
            self.items.append(message)

    def unknown_keys(self, where: str, table: dict, known: tuple[str, ...]) -> None:
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f"did you mean '{close[0]}'?" if close else "known keys: " + ", ".join(known)
                self.add(f"{where}: unknown key '{key}' ({hint})")


def table_of(value: Any, where: str, p: Problems) -> dict:
    if isinstance(value, dict):
        return value
    p.add(f"{where} must be a table of key = value lines")
    return {}


def seeds_of(value: Any, where: str, p: Problems) -> list[int]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                             for v in values):
        p.add(f"{where} = {value!r} must be a non-negative whole number or a list of them")
        return [0]
    return values


def encoder_name(name: str, modality: Modality, where: str, base: Path, p: Problems) -> str:
    """A registered name as is, a model directory relative to the experiment file made
    absolute; anything else is named as a problem (hub ids with '/' are taken on trust)."""
    from biofuse.pipeline.encoders import encoder_info, names_for

    try:
        if encoder_info(name, modality) is not None:
            return name
    except BiofuseError as exc:
        p.add(f"{where}: {exc}")
        return name
    local = base / name
    if local.is_dir():
        return str(local.resolve())
    if Path(name).is_dir() or "/" in name or name in p.store_ids:  # a directory, hub id, store
        return name
    close = difflib.get_close_matches(name, names_for(modality), n=1, cutoff=0.5)
    p.add(f"{where}: unknown {modality} encoder '{name}' ("
          + (f"did you mean '{close[0]}'?" if close else
             "registered: " + ", ".join(names_for(modality)))
          + "; a model directory or hub id works too)")
    return name


def encoder_lists(value: Any, where: str, base: Path, p: Problems) -> dict[Modality, list[str]]:
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


def store_ids(cache_dir: Path | None) -> set[str]:
    from biofuse.cache import EmbeddingCache, default_cache_dir

    root = Path(cache_dir or default_cache_dir())
    try:
        return set(EmbeddingCache(root).fingerprint_ids()) if root.is_dir() else set()
    except BiofuseError:
        return set()


def axis(key: str, value: Any, is_tuple: bool) -> list[Any]:
    """The values a grid key takes. A list is an axis; for a tuple-valued option (kernels,
    entropy_weights) a list of numbers is one value and a list of lists the axis; for
    ``modalities`` every element (a "dna,rna" string or a list) is one value."""
    if key == "modalities":
        return value if isinstance(value, list) else [value]
    if is_tuple:
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            return value
        return [value if isinstance(value, list) else [value]]
    return value if isinstance(value, list) else [value]


def grid(table: dict, fields: dict[str, bool]) -> list[dict[str, Any]]:
    """Every combination of the table's values (``fields``: name -> is a tuple option)."""
    keys = [k for k in table if k in fields]
    axes = [axis(k, table[k], fields[k]) for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*axes)]


def tuple_fields(cls) -> dict[str, bool]:
    hints = typing.get_type_hints(cls)
    return {f.name: base_type(hints[f.name]) is tuple for f in option_fields(cls)}


def checked_names(value: Any, known, where: str, p: Problems) -> list[str]:
    values = value if isinstance(value, list) else [value]
    good = []
    for v in values:
        if not isinstance(v, str):
            p.add(f"{where}: {v!r} is not a name (give a name or a list of names)")
            continue
        if v in known:
            good.append(v)
            continue
        close = difflib.get_close_matches(str(v), list(known), n=1, cutoff=0.5)
        p.add(f"{where}: unknown '{v}' (" + (f"did you mean '{close[0]}'?" if close else
                                             "known: " + ", ".join(known)) + ")")
    return good


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def open_table(kind: str, table: dict, index: int, known: tuple[str, ...],
               p: Problems) -> tuple[str, str, bool]:
    """A ``[[fit]]`` / ``[[finetune]]`` table's name, how problems name it, and whether it can
    be expanded (an empty list is an axis without values: nothing to expand)."""
    given = table.get("name")
    name = given if isinstance(given, str) else f"{kind}{index}"
    where = f"[[{kind}]] '{name}'" if isinstance(given, str) else f"[[{kind}]] #{index}"
    if given is not None and not isinstance(given, str):
        p.add(f"{where}: name = {given!r} is not text")
    p.unknown_keys(where, table, known)
    for key, value in table.items():
        if isinstance(value, list) and not value:
            p.add(f"{where}: {key} is an empty list")
            return name, where, False
    return name, where, True
