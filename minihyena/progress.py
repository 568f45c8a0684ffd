"""A dependency-free progress bar for training loops."""
from __future__ import annotations

import sys
import time


class Progress:
    """``Progress(total)``; call ``update(step, **fields)`` after each step and ``close()`` at the end.

    On a terminal it redraws one line; elsewhere (logs, CI) it prints a line every ``every`` steps.
    """

    def __init__(self, total: int, start: int = 0, width: int = 24, stream=None, every: int | None = None):
        self.total, self.start, self.width = total, start, width
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = every or max(1, (total - start) // 20)
        self.t0 = time.perf_counter()
        self.last_len = 0

    def update(self, step: int, **fields) -> None:
        done = step - self.start
        if not self.tty and done % self.every and step != self.total:
            return
        elapsed = time.perf_counter() - self.t0
        frac = step / max(1, self.total)
        eta = elapsed / max(1, done) * (self.total - step)
        bar = "#" * int(frac * self.width) + "." * (self.width - int(frac * self.width))
        info = " | ".join(f"{k} {v}" for k, v in fields.items())
        line = f"[{bar}] {step}/{self.total} | {info} | {_clock(elapsed)} < {_clock(eta)}"
        if self.tty:
            self.stream.write("\r" + line.ljust(self.last_len))
            self.last_len = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def write(self, message: str) -> None:
        """Print a message on its own line without breaking the bar."""
        if self.tty and self.last_len:
            self.stream.write("\r" + " " * self.last_len + "\r")
        self.stream.write(message + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.last_len:
            self.stream.write("\n")
            self.stream.flush()
        self.last_len = 0


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"
