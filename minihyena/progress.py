"""Progress of a loop on stderr: a tqdm bar on a terminal, plain lines elsewhere (logs, pipes, mpiexec)."""
from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm


class Progress:
    """``Progress(total)``; call ``update(step, **fields)`` after each step and ``close()`` at the end.

    On a terminal it is a tqdm bar that redraws one line, with ``fields`` (e.g. the loss) after the rate.
    Elsewhere it prints the same information as one plain line every ``every`` steps (and at the last),
    with an ASCII bar ``width`` characters wide and no carriage returns. ``start``: the step the loop
    resumes from. ``unit="B"`` counts bytes, shown scaled (``MB/s``).
    """

    def __init__(self, total: int, start: int = 0, width: int = 24, stream=None, every: int | None = None,
                 unit: str = "it"):
        self.total, self.start, self.width = total, start, width
        self.units = {"unit": unit, "unit_scale": unit == "B"}
        self.last = start  # the step of the last plain line
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = every or max(1, (total - start) // 20)
        self.t0 = time.perf_counter()
        self.bar = None
        if self.tty:  # a terminal that reports no size (a fresh pseudo-terminal) is taken as 80 x 24
            size = {} if _columns(self.stream) > 0 else {"ncols": 80, "nrows": 24}
            self.bar = tqdm(total=total, initial=start, file=self.stream, dynamic_ncols=not size, **size, **self.units)

    def update(self, step: int, **fields) -> None:
        """The loop has finished ``step`` steps; ``fields`` are shown as ``name=value`` after the rate."""
        postfix = ", ".join(f"{k}={v}" for k, v in fields.items())
        if self.bar is not None:
            self.bar.set_postfix_str(postfix, refresh=False)
            self.bar.update(step - self.bar.n)  # tqdm redraws at most every 0.1 s
            return
        if step - self.last < self.every and step != self.total:
            return
        self.last = step
        line = tqdm.format_meter(step, self.total, time.perf_counter() - self.t0, ascii=True, postfix=postfix,
                                 initial=self.start, bar_format=f"{{l_bar}}{{bar:{self.width}}}{{r_bar}}", **self.units)
        self.stream.write(line + "\n")
        self.stream.flush()

    def write(self, message: str) -> None:
        """Print a message on its own line without breaking the bar."""
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            self.stream.write(message + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Leave the finished bar on the terminal and end its line."""
        if self.bar is not None:
            self.bar.close()


def _columns(stream) -> int:
    """The width of the terminal ``stream`` writes to (0 when it has none or does not say)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # no file descriptor (a fake terminal), or not a terminal
        return 0
