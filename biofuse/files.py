"""Files biofuse reads and writes, handled by one set of rules.

- **Reading**: only regular files (a FIFO, a device or a socket would hang a read or never end
  it: ``/dev/zero`` is endless), and their size is bounded.
- **Writing**: a file is written to a temporary name beside it and renamed over the target, so a
  reader sees the old file or the new one, never half of one; a full disk, a quota or a
  read-only filesystem is raised as the OSError it is, naming the path (libraries that bury the
  errno in their own exceptions, such as torch's and polars' writers, write to memory first).
- **Containment**: every path biofuse deletes or writes under a folder it was given (a cache,
  an experiment's output, a report) is checked to stay inside it, and names that come from
  files (dataset names, fingerprint ids) become path components only through :func:`safe_name`
  or :func:`check_name`. Deletion never follows a symbolic link out of the folder.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from biofuse.errors import ConfigError

#: the largest file biofuse reads whole (tables, experiment files, run records)
MAX_READ_BYTES = 8 << 30
#: errnos that describe the user's machine, not a bug: reported with the path and what to do
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                                errno.EPERM})
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


# ------------------------------------------------------------------------------ reading

def regular_file(path: str | Path, what: str = "file", fix: str | None = None) -> Path:
    """``path`` if it is a regular file (symbolic links followed) of at most MAX_READ_BYTES; a
    ConfigError naming ``what`` otherwise. Never opens it."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"The {what} {path} does not exist.",
                          fix or "Check the path.") from None
    except OSError as exc:
        raise ConfigError(f"The {what} {path} cannot be read ({exc.strerror}).",
                          fix or "Check the path and its permissions.") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"The {what} {path} is a directory, not a file.", fix or
                          "Pass the file itself.")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise ConfigError(f"The {what} {path} is {kind}, which biofuse does not read (it could "
                          "wait forever or never end).",
                          fix or "Write the data to a regular file and pass that.")
    if st.st_size > MAX_READ_BYTES:
        raise ConfigError(f"The {what} {path} holds {st.st_size:,} bytes, more than biofuse "
                          f"reads whole ({MAX_READ_BYTES:,}).",
                          fix or "Split it, or pass a smaller file.")
    return path


def read_bytes(path: str | Path, what: str = "file", fix: str | None = None) -> bytes:
    return regular_file(path, what, fix).read_bytes()


def read_text(path: str | Path, what: str = "file", fix: str | None = None) -> str:
    """The UTF-8 text of a regular file; undecodable bytes are a ConfigError naming it."""
    raw = read_bytes(path, what, fix)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"The {what} {path} is not UTF-8 text (byte {exc.start}).",
                          fix or "Pass the text file biofuse wrote, or re-save it as UTF-8."
                          ) from None


# ------------------------------------------------------------------------------ writing

def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename. On failure nothing is
    left but the old file (if any); the OSError names ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], object]) -> None:
    """``write(buffer)`` into memory, then :func:`write_bytes_atomic`: for writers (torch.save,
    polars) whose own disk errors lose the errno and leave half-written files."""
    buffer = io.BytesIO()
    write(buffer)
    write_bytes_atomic(path, buffer.getvalue())


def disk_error(exc: BaseException, path: str | Path) -> OSError | None:
    """The OSError behind ``exc`` (in its chain, or a library's "No space left on device"
    message) when it describes the machine (full disk, quota, read-only, permission), with
    ``path``; None when it does not."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in ENVIRONMENT_ERRNOS:
            return OSError(seen.errno, seen.strerror, seen.filename or str(path))
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        if os.strerror(code) in text or f"os error {code})" in text:
            return OSError(code, os.strerror(code), str(path))
    return None


@contextmanager
def disk_errors(path: str | Path) -> Iterator[None]:
    """Inside the block, a library's error that hides a full disk, a quota or a read-only
    filesystem (see :func:`disk_error`) is raised as that OSError, naming ``path``."""
    try:
        yield
    except (OSError, KeyboardInterrupt, ConfigError):
        raise
    except Exception as exc:
        found = disk_error(exc, path)
        if found is None:
            raise
        raise found from exc


# ------------------------------------------------------------------------------ containment

def check_name(name: str, what: str) -> str:
    """``name`` if it can be one path component as it is (letters, digits, ``._-``, starting
    with a letter or digit); a ConfigError naming ``what`` otherwise."""
    if not isinstance(name, str) or not _SAFE.fullmatch(name) or len(name) > 128:
        raise ConfigError(f"{what} {name!r} cannot name a folder: it becomes part of a path.",
                          "Use letters, digits, '.', '_' and '-' only, starting with a letter "
                          "or digit (at most 128 characters).")
    return name


def safe_name(name: object) -> str:
    """A folder or file name made from any text: itself when it is safe (:func:`check_name`),
    else its safe characters plus a short hash of the original, so two names never meet."""
    text = str(name)
    if _SAFE.fullmatch(text) and len(text) <= 128:
        return text
    kept = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:64] or "name"
    return f"{kept}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def inside(root: str | Path, *parts: str) -> Path:
    """``root / parts``, checked to stay inside ``root`` once ``..`` and symbolic links are
    resolved; a ConfigError otherwise."""
    root = Path(root)
    path = root.joinpath(*parts)
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise ConfigError(f"{path} leads outside {root} (to {real}); biofuse writes and "
                          "deletes only inside the folders it was given.",
                          "Remove the symbolic link or the '..' that leads out.")
    return path


def remove_tree(root: str | Path, path: str | Path) -> int:
    """Delete ``path`` (a folder or file inside ``root``) and return the bytes freed. A symbolic
    link is removed as a link, its target untouched; a path that leads outside ``root`` is
    refused."""
    path = Path(path)
    if path.is_symlink():
        path.unlink()
        return 0
    inside(root, os.path.relpath(path, root))
    size = du(path)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)  # rmtree itself never follows links
    else:
        path.unlink(missing_ok=True)
    return size


def du(path: str | Path) -> int:
    """Bytes of the regular files under ``path``, links not followed."""
    path = _path(path)
    if path.is_symlink() or not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    if not isinstance(path, Path):  # a URL cache's path (fsspec): no links to worry about
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    total = 0
    for dirpath, _, names in os.walk(path):  # os.walk does not follow links by default
        for n in names:
            p = Path(dirpath) / n
            if not p.is_symlink():
                try:
                    total += p.stat().st_size
                except OSError:
                    pass
    return total


def real_subdirs(path: str | Path) -> list[Path]:
    """The entries (folders, files, links) of folder ``path`` when it is a real folder, not a
    link to one; [] else."""
    path = _path(path)
    if path.is_symlink() or not path.is_dir():
        return []
    return sorted(path.iterdir())


def _path(path):
    """A path object as it is (pathlib's, or a URL cache's fsspec path), else a Path."""
    return path if hasattr(path, "iterdir") else Path(path)


# ------------------------------------------------------------------------------ records

_MISSING = object()
_WORDS = {str: "text", int: "a whole number", float: "a number", bool: "true or false",
          dict: "an object", list: "a list"}


class Record:
    """A JSON document biofuse wrote and reads back (a run's config.json, metrics.json), with
    typed access: a field of the wrong shape, or missing, is a ConfigError naming the file, the
    field and ``fix``, never a KeyError or TypeError later."""

    def __init__(self, doc: object, source: str | Path, fix: str, where: str = ""):
        self.doc, self.source, self.fix, self.where = doc, str(source), fix, where
        if not isinstance(doc, dict):
            self._wrong(where or "the document", doc, "an object")

    @classmethod
    def read(cls, path: str | Path, fix: str) -> Record:
        import json

        try:
            return cls(json.loads(read_text(path, "record", fix)), path, fix)
        except ValueError as exc:
            raise ConfigError(f"{path} is not valid JSON ({exc}).", fix) from None

    def get(self, key: str, kind: type | tuple[type, ...], default: object = _MISSING):
        """Field ``key``, checked to be of ``kind`` (int also accepted as float; None only as
        the default)."""
        if key not in self.doc:
            if default is _MISSING:
                raise ConfigError(f"{self.source}: the field {self._name(key)} is missing.",
                                  self.fix)
            return default
        value = self.doc[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = any(isinstance(value, k) and not (k in (int, float) and isinstance(value, bool))
                 for k in kinds) or (float in kinds and isinstance(value, int)
                                     and not isinstance(value, bool))
        if not ok and not (value is None and default is None):
            self._wrong(self._name(key), value, " or ".join(_WORDS.get(k, k.__name__)
                                                            for k in kinds))
        return value

    def section(self, key: str) -> Record:
        return Record(self.get(key, dict), self.source, self.fix, self._name(key))

    def mapping(self, key: str, kind: type | tuple[type, ...]) -> dict:
        """Field ``key``: an object whose every value is of ``kind``."""
        sub = self.section(key)
        return {k: sub.get(k, kind) for k in sub.doc}

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _wrong(self, name: str, value: object, expected: str):
        shown = repr(value) if len(repr(value)) < 60 else repr(value)[:57] + "..."
        raise ConfigError(f"{self.source}: {name} = {shown} is not {expected}.", self.fix)
