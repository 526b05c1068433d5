"""Checks of the Python API's own arguments (the options of each stage are checked by their
dataclasses): a wrong type is a ConfigError naming the argument and what it takes, as the
command line would say it, never a TypeError from deep inside."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from biofuse.errors import ConfigError


def path_arg(name: str, value: Any, *, optional: bool = False) -> Path | None:
    """``value`` as a Path: a non-empty str or os.PathLike (None too when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, (str, os.PathLike)) and str(value).strip():
        return Path(value)
    raise ConfigError(f"{name}={value!r} is not a path.",
                      f"Give {name} a file or folder name, as a str or a pathlib.Path.")


def paths_arg(name: str, value: Any) -> list[Path]:
    """One path or a non-empty list of them."""
    items = [value] if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(items, Iterable) or isinstance(items, (bytes, dict)):
        raise ConfigError(f"{name}={value!r} is not a path or a list of paths.",
                          f"Give {name} a folder, or a list of folders.")
    items = list(items)
    if not items:
        raise ConfigError(f"{name} is an empty list.", f"Give {name} at least one folder.")
    return [path_arg(name, v) for v in items]


def int_arg(name: str, value: Any, low: int, high: int | None = None, *,
            optional: bool = False) -> int | None:
    """A whole number in [low, high]."""
    if value is None and optional:
        return None
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low \
        and (high is None or value <= high)
    if not ok:
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise ConfigError(f"{name}={value!r} is not a whole number {bound}.",
                          f"Give {name} a whole number {bound}.")
    return value


def text_arg(name: str, value: Any, *, choices: Iterable[str] | None = None,
             optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    choices = tuple(choices) if choices is not None else None
    if not isinstance(value, str) or (choices is not None and value not in choices):
        allowed = f"one of {', '.join(choices)}" if choices else "text"
        raise ConfigError(f"{name}={value!r} is not {allowed}.", f"Give {name} {allowed}.")
    return value


def texts_arg(name: str, value: Any) -> tuple[str, ...]:
    """One text or a list of texts."""
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, str) for v in items):
        raise ConfigError(f"{name}={value!r} is not a name or a list of names.",
                          f"Give {name} a name, or a list of names.")
    return tuple(items)
