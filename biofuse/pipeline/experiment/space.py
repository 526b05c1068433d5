"""Search spaces in experiment files: an option given as a distribution instead of a value.

```toml
[[fit]]
fusion = ["concat", "mil"]                  # a list is still a grid axis: one search each
lr = { log_uniform = [1e-4, 1e-2] }         # float, sampled on a log scale
textcnn = { channels = { int = [32, 256] } }
mil = { dim = { log_int = [32, 600] } }
search = { trials = 30, sampler = "tpe", seed = 0, pruner = "median" }
```

The kinds: ``uniform`` and ``log_uniform`` (numbers), ``int`` and ``log_int`` (whole numbers);
both ends are inclusive and each is checked against the option's own range, so a search cannot
sample a value the option refuses. :func:`split_space` takes the distributions out of a table
(the grid expands with their lower ends in place) and :func:`apply` puts sampled values back into
a task's options. search.py runs the searches.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import asdict, dataclass
from typing import Any

from biofuse.errors import BiofuseError
from biofuse.options import base_type, from_dict, option_fields
from biofuse.pipeline.experiment.grid import Problems

#: distribution kind -> (whole numbers, log scale)
KINDS = {"uniform": (False, False), "log_uniform": (False, True), "int": (True, False),
         "log_int": (True, True)}
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")


@dataclass(frozen=True)
class Distribution:
    kind: str
    low: float
    high: float

    @property
    def integer(self) -> bool:
        return KINDS[self.kind][0]

    @property
    def log(self) -> bool:
        return KINDS[self.kind][1]

    def to_optuna(self):
        import optuna

        if self.integer:
            return optuna.distributions.IntDistribution(int(self.low), int(self.high),
                                                        log=self.log)
        return optuna.distributions.FloatDistribution(float(self.low), float(self.high),
                                                      log=self.log)

    def describe(self) -> str:
        return f"{self.kind} [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class SearchSettings:
    """The ``search = {...}`` table: how many trials, how they are sampled and pruned."""

    trials: int = 20
    sampler: str = "tpe"
    seed: int = 0
    pruner: str = "median"
    startup_trials: int = 5  # trials sampled at random (and never pruned against) first
    warmup_epochs: int = 10  # epochs a trial trains before it can be pruned

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_distribution(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in KINDS


def _looks_like_distribution(value: Any) -> bool:
    return isinstance(value, dict) and any(
        difflib.get_close_matches(str(k), list(KINDS), n=1, cutoff=0.7) for k in value)


def split_space(table: dict, fields: tuple[str, ...], options_cls: type, methods: dict,
                where: str, p: Problems) -> tuple[dict, dict[str, Distribution],
                                                  SearchSettings | None]:
    """``table`` with every distribution replaced by its lower end, the distributions by path
    (``lr``, ``textcnn.channels``) and the search settings (None: not a search). Problems
    (unknown kinds, bad ends, distributions on options that are not numbers, a ``search``
    table without distributions) are added to ``p``."""
    table = dict(table)
    space: dict[str, Distribution] = {}
    settings_value = table.pop("search", None)
    for key, value in list(table.items()):
        if key in fields and (is_distribution(value) or _looks_like_distribution(value)):
            dist = _distribution(key, value, options_cls, key, where, p)
            if dist is not None:
                space[key] = dist
                table[key] = _low(dist)
        elif key in fields and isinstance(value, list) and any(isinstance(v, dict) for v in value):
            p.add(f"{where}: {key} = {value!r} mixes a distribution into a list; give either a "
                  "list of values (a grid axis) or one distribution")
        elif key in methods and isinstance(value, dict):
            inner = dict(value)
            for name, v in value.items():
                if is_distribution(v) or _looks_like_distribution(v):
                    dist = _distribution(name, v, methods[key].Options, f"{key}.{name}", where, p)
                    if dist is not None:
                        space[f"{key}.{name}"] = dist
                        inner[name] = _low(dist)
            table[key] = inner
    settings = _settings(settings_value, where, p) if settings_value is not None else None
    if settings_value is not None and not space and not p.items:
        p.add(f"{where}: search = {{...}} but no option is a distribution; give one, e.g. "
              "lr = { log_uniform = [1e-4, 1e-2] }, or drop search")
    if space and settings is None:
        settings = SearchSettings()
    return table, space, settings


def _low(dist: Distribution) -> float | int:
    return int(dist.low) if dist.integer else float(dist.low)


def _distribution(name: str, value: dict, cls: type, path: str, where: str,
                  p: Problems) -> Distribution | None:
    at = f"{where}: {path} = {_toml(value)}"
    if not is_distribution(value):
        p.add(f"{at} is not a distribution: give exactly one of "
              + ", ".join(f"{{ {k} = [low, high] }}" for k in KINDS))
        return None
    kind, ends = next(iter(value.items()))
    integer, log = KINDS[kind]
    if not (isinstance(ends, list) and len(ends) == 2 and all(
            isinstance(e, (int, float)) and not isinstance(e, bool) for e in ends)):
        p.add(f"{at}: {kind} takes two numbers, [low, high]")
        return None
    low, high = ends
    if integer and not all(isinstance(e, int) or float(e).is_integer() for e in ends):
        p.add(f"{at}: {kind} takes two whole numbers (uniform or log_uniform for any number)")
        return None
    if not low < high:
        p.add(f"{at}: the low end must be below the high end")
        return None
    if log and low <= 0:
        p.add(f"{at}: a log scale needs a positive low end (the log of {low:g} is undefined); "
              "use uniform, or a small positive low end such as 1e-5")
        return None
    f = {f.name: f for f in option_fields(cls)}.get(name)
    if f is None:
        return None  # unknown option: named by the table's own check
    if name == "seed":
        p.add(f"{at}: seeds are not searched (a search's best configuration is re-run for "
              "every seed of the file); give seed = [0, 1, 2] as a list")
        return None
    kind_of = base_type(typing.get_type_hints(cls)[name])
    if kind_of not in (int, float):
        p.add(f"{at}: {path} is not a number option, so it cannot be searched over a range "
              "(a list of values makes it a grid axis)")
        return None
    if kind_of is int and not integer:
        p.add(f"{at}: {path} is a whole number; use {{ int = [...] }} or {{ log_int = [...] }}")
        return None
    for end in (low, high):
        try:
            from_dict(cls, {name: int(end) if kind_of is int else float(end)},
                      getattr(cls, "prefix", ""))
        except BiofuseError as exc:
            p.add(f"{at}: the end {end:g} is out of the option's range ({exc.problem})")
            return None
        except TypeError:
            continue  # a class that needs more than one option to build: checked by expansion
    return Distribution(kind, float(low), float(high))


def _settings(value: Any, where: str, p: Problems) -> SearchSettings | None:
    at = f"{where}: search"
    if not isinstance(value, dict):
        p.add(f"{at} = {value!r} must be a table, e.g. {{ trials = 30, sampler = \"tpe\" }}")
        return None
    p.unknown_keys(at, value, tuple(SearchSettings.__dataclass_fields__))
    known = {k: v for k, v in value.items() if k in SearchSettings.__dataclass_fields__}
    for key in ("trials", "seed", "startup_trials", "warmup_epochs"):
        v = known.get(key)
        least = 1 if key == "trials" else 0
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < least):
            p.add(f"{at}: {key} = {v!r} must be a whole number of at least {least}")
            return None
    if known.get("trials", 0) > 10_000:
        p.add(f"{at}: trials = {known['trials']} is more than 10,000; a search that large is "
              "a job for several experiment files")
        return None
    for key, choices in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        if key in known and known[key] not in choices:
            p.add(f"{at}: {key} = {known[key]!r} is not one of {', '.join(choices)}")
            return None
    return SearchSettings(**known)


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def for_task(space: dict[str, Distribution], options: dict) -> dict[str, Distribution]:
    """The part of ``space`` one task samples: top-level options, and the options of the
    fusion and head it runs (a grid of concat and mil searches mil.dim for mil only)."""
    methods = {options.get("fusion"), options.get("head")}
    return {k: d for k, d in space.items() if "." not in k or k.split(".", 1)[0] in methods}


def apply(options: dict, params: dict[str, Any]) -> dict:
    """A task's options with sampled ``params`` (path -> value) in place."""
    out = {**options}
    for path, value in params.items():
        if "." not in path:
            out[path] = value
            continue
        method, name = path.split(".", 1)
        key = "fusion_options" if out.get("fusion") == method else "head_options"
        out[key] = {**(out.get(key) or {}), name: value}
    return out
