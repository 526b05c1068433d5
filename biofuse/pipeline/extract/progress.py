"""Extraction's progress line: sequences/s and tokens/s on stderr."""

from __future__ import annotations

import sys
import time


class Progress:
    """Sequences/s and tokens/s on stderr: redrawn in place on a terminal, a line every 10 s
    otherwise."""

    def __init__(self, total: int, label: str, stream=None):
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done = self.tokens = 0
        self.start = self.last = time.perf_counter()

    def __call__(self, n_seqs: int, n_tokens: int) -> None:
        self.done += n_seqs
        self.tokens += n_tokens
        now = time.perf_counter()
        if now - self.last < (0.5 if self.tty else 10.0) and self.done < self.total:
            return
        self.last = now
        dt = max(now - self.start, 1e-9)
        line = (f"{self.label}: {self.done}/{self.total} sequences, {self.done / dt:,.1f} seq/s, "
                f"{self.tokens / dt:,.0f} tokens/s")
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.done:
            self.stream.write("\n")

