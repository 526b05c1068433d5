"""One registry for every kind of pluggable component (encoders, fusion methods, heads): a
mapping from the name users type to what it names, filled by ``register`` at import, refusing
duplicate names. The command line offers ``sorted(REGISTRY)`` as its choices, so a component
exists in one place only."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Registry(dict[K, V], Generic[K, V]):
    """Names of one ``kind`` of component -> the component."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: K, value: V) -> V:
        """Add ``name``; a name registered twice is a programming error."""
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self[name] = value
        return value
