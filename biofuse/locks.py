"""One writer per output folder: a second `biofuse run` on the same experiment folder, or a second
`biofuse fit` into the same run directory, would train the same runs twice and interleave their
logs. An advisory ``flock`` on a file in the folder is held while the first works; the operating
system releases it when that process ends, however it ends, so a crash leaves nothing to clean.
(Where ``fcntl`` does not exist, e.g. Windows, nothing is locked.)
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from biofuse.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover — Windows
    fcntl = None


@contextmanager
def exclusive(folder: Path, what: str, fix: str) -> Iterator[None]:
    """Hold ``folder/.biofuse.lock`` while the block runs; if another live process holds it,
    raise a ConfigError naming that process and its work (``what``, e.g. "training a model")
    and ``fix``."""
    if fcntl is None:
        yield
        return
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".biofuse.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"{folder} is in use: {_holder(path)}, and a second writer"
                              " would train the same runs twice and mix their logs.",
                              fix) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        yield
    finally:
        os.close(fd)  # releases the lock
        if created and [p.name for p in folder.iterdir()] == [path.name]:
            path.unlink(missing_ok=True)  # refused before writing anything: leave no folder
            folder.rmdir()


def _holder(path: Path) -> str:
    try:
        doc = json.loads(path.read_text())
        return (f"process {doc['pid']} on {doc['host']} has been {doc['what']} there since "
                f"{doc['since']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process is writing there"
