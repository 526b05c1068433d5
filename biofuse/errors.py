"""Typed errors for user mistakes.

Every mistake a user can make (a bad column, a bad sequence, a wrong cache path, ...) raises a
subclass of :class:`BiofuseError` carrying two sentences: what is wrong and how to fix it. The CLI
prints them as one paragraph and exits with code 2, without a traceback. Internal invariants use
``assert``; anything else that escapes is a bug and exits with code 1.
"""

from __future__ import annotations


class BiofuseError(Exception):
    """A user-facing error: ``problem`` says what is wrong, ``fix`` what to do about it."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem.strip()
        self.fix = fix.strip() if fix else None
        super().__init__(str(self))

    def __str__(self) -> str:
        return self.problem if not self.fix else f"{self.problem} {self.fix}"


class DataError(BiofuseError):
    """The user's table cannot be read or does not hold what was asked for."""


class ColumnError(DataError):
    """A column was named that does not exist, or none could be detected."""


class SequenceError(DataError):
    """A sequence holds characters outside its alphabet.

    ``position`` is 0-based in the sequence as given (after stripping whitespace).
    """

    def __init__(self, problem: str, fix: str | None = None, *, position: int = -1,
                 char: str = "") -> None:
        super().__init__(problem, fix)
        self.position = position
        self.char = char


class OrfError(DataError):
    """A sequence does not pass the chosen ORF policy (it is dropped with this reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(BiofuseError):
    """An option or configuration value is invalid."""


class CacheError(BiofuseError):
    """The embedding cache cannot be opened or used as asked."""


class CacheCorruption(CacheError):
    """Data in the cache is damaged; nothing damaged is ever returned."""


class FingerprintMismatch(CacheError):
    """A store's recorded encoder fingerprint differs from the one asked for."""
