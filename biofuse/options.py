"""Options dataclasses: one field per option, with its help text, command-line flag and range.

Every configurable component (extract, fit, each fusion method and head) declares its options as
a frozen, keyword-only dataclass whose fields are made with :func:`option`. The same declaration
gives the Python API its defaults and checks (``check`` in ``__post_init__``) and the command
line its flags (``biofuse.cli`` builds click options from the fields), so an option exists in one
place only. A subclass that shares an option but not its default says so with
:func:`same_option` (the help, flag and range stay the base's). An option that was renamed keeps
its old name as an alias: :func:`from_dict` and the command line accept it with a deprecation
warning.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
import warnings
from dataclasses import MISSING, Field, dataclass
from typing import Any

from biofuse.errors import ConfigError


def option(default: Any = MISSING, help: str = "", *, flag: str | None = None,
           min: float | None = None, max: float | None = None, above: float | None = None,
           choices: tuple[str, ...] | None = None, cli: bool = True,
           aliases: tuple[str, ...] = ()) -> Any:
    """A dataclass field that is an option.

    ``flag``: the command-line flag (default ``--<prefix><name>`` with dashes); ``min``/``max``:
    inclusive bounds, ``above``: exclusive lower bound; ``choices``: allowed strings; ``cli``:
    False for options only the Python API sets; ``aliases``: former names, still accepted (with
    a deprecation warning) as keywords, experiment-file keys and flags. Numbers must also be
    finite.
    """
    meta = {"help": help, "flag": flag, "min": min, "max": max, "above": above,
            "choices": choices, "cli": cli, "aliases": tuple(aliases)}
    return _field(default, meta)


def _field(default: Any, meta: dict) -> Any:
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def same_option(base: type, name: str, default: Any, note: str = "") -> Any:
    """Option ``name`` of the options class ``base`` with this subclass's own default: the
    help, flag, range and aliases are declared once, in ``base``; ``note`` adds what only this
    subclass's users need to know (how its default is chosen)."""
    f = next((f for f in dataclasses.fields(base) if f.name == name), None)
    assert f is not None and "help" in f.metadata, f"{base.__name__} has no option {name}"
    meta = dict(f.metadata)
    if note:
        meta["help"] = f"{meta['help']} {note}"
    return _field(default, meta)


@dataclass(frozen=True, kw_only=True)
class NoOptions:
    """The options of a method (fusion, head) that has none."""

    prefix = ""


def flag_name(f: Field, prefix: str = "") -> str:
    return f.metadata.get("flag") or f"--{prefix}{f.name.replace('_', '-')}"


def option_fields(cls) -> list[Field]:
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def alias_flags(f: Field, prefix: str = "") -> list[str]:
    """The command-line spellings of an option's former names."""
    return [f"--{prefix}{a.replace('_', '-')}" for a in f.metadata.get("aliases", ())]


def _resolved_types(obj) -> dict[str, Any]:
    return typing.get_type_hints(type(obj))


def check(obj, prefix: str = "") -> None:
    """Validate every option of ``obj`` against its declared type, range and choices; raise one
    :class:`ConfigError` naming the flag, the value and what is allowed. Types are checked as
    declared (text, whole numbers, numbers, true/false, lists, tables), so a wrong shape from
    Python, an experiment file or a saved config is a clear error, never a crash later."""
    hints = _resolved_types(obj)
    for f in option_fields(obj):
        value = getattr(obj, f.name)
        flag = flag_name(f, prefix) if f.metadata.get("cli", True) else f.name
        kind = hints.get(f.name)
        if value is None:
            if type(None) not in typing.get_args(kind):
                raise ConfigError(f"{flag} cannot be left empty (None).",
                                  f"Give {flag} a value{_default_text(f)}.")
            continue
        base = base_type(kind)
        _check_value(f, flag, base, kind, value)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{flag} {value!r} is not one of {', '.join(choices)}.",
                              f"Use one of: {', '.join(choices)}.")


_KIND_WORDS = {str: "text", bool: "true or false", int: "a whole number", float: "a number",
               dict: "a table of options"}
_PLURAL = {str: "names", bool: "true/false values", int: "whole numbers", float: "numbers"}


def _check_value(f: Field, flag: str, base, kind, value) -> None:
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{flag} {value!r} is not true or false.", "Use true or false.")
    elif base in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{flag} {value!r} is not a number.",
                              f"Give {flag} a number{_range_text(f)}.")
        if base is int and not float(value).is_integer():
            raise ConfigError(f"{flag} {value!r} is not a whole number.",
                              f"Give {flag} a whole number{_range_text(f)}.")
        if not math.isfinite(value) or not _in_range(f, value):
            raise ConfigError(f"{flag} {value!r} is out of range.",
                              f"Give {flag} a finite number{_range_text(f)}"
                              f"{_default_text(f)}.")
    elif base is tuple:
        item = next((a for a in typing.get_args(_tuple_hint(kind)) if a is not Ellipsis), str)
        word = _PLURAL.get(item, item.__name__)
        if not isinstance(value, (tuple, list)) or not all(_is(v, item) for v in value):
            example = (f" such as {list(f.default)}" if isinstance(f.default, tuple)
                       and f.default else "")
            raise ConfigError(f"{flag} {value!r} is not a list of {word}.",
                              f"Give {flag} a list of {word}{example}.")
    elif base in (str, dict) and not isinstance(value, base):
        raise ConfigError(f"{flag} {value!r} is not {_KIND_WORDS[base]}.",
                          f"Give {flag} {_KIND_WORDS[base]}{_default_text(f)}.")


def _is(value, kind) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind in (int, float):
        return not isinstance(value, bool) and isinstance(value, (int, float)) and (
            kind is float or float(value).is_integer())
    return isinstance(value, kind)


def _tuple_hint(kind):
    """``tuple[X, ...]`` out of ``tuple[X, ...] | None``."""
    if typing.get_origin(kind) is tuple:
        return kind
    return next((a for a in typing.get_args(kind) if typing.get_origin(a) is tuple), kind)


def base_type(kind) -> Any:
    """int for ``int``, ``int | None``; tuple for ``tuple[int, ...]``; else the type itself."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return base_type(args[0]) if len(args) == 1 else kind
    return typing.get_origin(kind) or kind


def _in_range(f: Field, value: float) -> bool:
    lo, hi, above = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("above")
    return ((lo is None or value >= lo) and (hi is None or value <= hi)
            and (above is None or value > above))


def _range_text(f: Field) -> str:
    lo, hi, above = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("above")
    parts = []
    if above is not None:
        parts.append(f"above {above:g}")
    if lo is not None:
        parts.append(f"at least {lo:g}")
    if hi is not None:
        parts.append(f"at most {hi:g}")
    return (" " + " and ".join(parts)) if parts else ""


def _default_text(f: Field) -> str:
    if f.default is MISSING or f.default is None:  # resolved later (e.g. the method's own)
        return ", or leave it out for the default"
    return f"; the default is {f.default!r}"


def from_dict(cls, values: dict[str, Any] | None, prefix: str = ""):
    """Build ``cls`` from a dict, naming unknown keys (with the flags that exist) as a ConfigError;
    lists become tuples where the field is a tuple."""
    values = canonical_names(cls, values, prefix)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in known]
    if unknown:
        flags = ", ".join(flag_name(f, prefix) for f in option_fields(cls)) or "none"
        raise ConfigError(f"Unknown option(s) {', '.join(unknown)} for {prefix.rstrip('-') or cls.__name__}.",
                          f"Its options are: {flags}.")
    hints = typing.get_type_hints(cls)
    for k, v in values.items():
        if isinstance(v, list) and base_type(hints.get(k)) is tuple:
            values[k] = tuple(v)
    return cls(**values)


def renamed(cls) -> dict[str, str]:
    """Former option names of ``cls`` -> their current names."""
    return {a: f.name for f in option_fields(cls) for a in f.metadata.get("aliases", ())}


def canonical_names(cls, values: dict[str, Any] | None, prefix: str = "",
                    warn: bool = True) -> dict[str, Any]:
    """``values`` with former option names replaced by current ones (a FutureWarning each, when
    ``warn``); both spellings at once is a ConfigError."""
    values = dict(values or {})
    for old, new in renamed(cls).items():
        if old not in values:
            continue
        if new in values:
            raise ConfigError(f"{old} and {new} are one option ({old} is its former name); "
                              "both were given.", f"Give {new} only.")
        if warn:
            flags = f"--{prefix}{old.replace('_', '-')}", f"--{prefix}{new.replace('_', '-')}"
            warnings.warn(f"The option {old} ({flags[0]}) is now called {new} ({flags[1]}); the "
                          "old name still works but will be removed.", FutureWarning,
                          stacklevel=3)
        values[new] = values.pop(old)
    return values
