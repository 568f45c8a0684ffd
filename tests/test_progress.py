"""The progress display: a tqdm bar on a terminal, one plain line every N steps anywhere else."""
from __future__ import annotations

import io
import os
import sys

import pytest

from minihyena.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drain(controller: int) -> bytes:
    """Everything a pseudo-terminal showed, read until its other side is closed; closes ``controller``."""
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # everything written has been read and the terminal side is closed
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    return shown


def run(progress: Progress, steps, note_at=None) -> None:
    for step in steps:
        progress.update(step, loss=f"{1 / step:.3f}", tok_s=f"{1000 * step:,}")
        if step == note_at:
            progress.write(f"step {step}: saved")
    progress.close()


def test_plain_lines_every_twentieth_of_the_run_and_at_the_end():
    out = io.StringIO()
    run(Progress(100, start=40, stream=out), range(41, 101), note_at=60)  # every (100 - 40) // 20 = 3 steps
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text  # a log file or a pipe: no redraws, no escape codes
    lines = text.splitlines()
    assert "step 60: saved" in lines
    bars = [line for line in lines if line != "step 60: saved"]
    assert [line.split("| ")[1].split(" ")[0] for line in bars] == [f"{s}/100" for s in range(43, 101, 3)]  # 100 included
    assert bars[-1].startswith("100%|" + "#" * 24 + "|")  # an ASCII bar of the default width
    assert "loss=0.010, tok_s=100,000]" in bars[-1]


def test_plain_lines_honour_every_and_width():
    out = io.StringIO()
    run(Progress(10, stream=out, every=4, width=8), range(1, 11))
    lines = out.getvalue().splitlines()
    assert [line.split("| ")[1].split(" ")[0] for line in lines] == ["4/10", "8/10", "10/10"]
    assert lines[0].startswith(" 40%|###") and lines[-1].startswith("100%|########|")


def test_a_terminal_gets_a_tqdm_bar_that_redraws_one_line():
    term = FakeTerminal()
    run(Progress(10, stream=term), range(1, 11), note_at=5)
    text = term.getvalue()
    assert "\r" in text and text.endswith("\n") and text.count("\n") == 2  # the message, then the finished bar
    final = text.rstrip("\n").split("\r")[-1]
    assert final.startswith("100%|") and "10/10" in final and "loss=0.100, tok_s=10,000]" in final
    assert "\rstep 5: saved\n" in text  # the bar is cleared before the message


SHOW_50_STEPS = """
from minihyena.progress import Progress
p = Progress(50)  # on sys.stderr
for step in range(1, 51):
    p.update(step, loss=f"{1 / step:.3f}")
p.close()
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX terminals")
@pytest.mark.parametrize("columns", [None, 60])
def test_stderr_on_a_pseudo_terminal_shows_the_bar(columns):
    """A fresh pseudo-terminal reports no size (tqdm alone would then draw nothing); one with a size gets a bar
    that fits it."""
    import fcntl
    import pty
    import struct
    import subprocess
    import termios

    controller, terminal = pty.openpty()
    if columns:
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", SHOW_50_STEPS], stderr=terminal)
    os.close(terminal)
    proc.wait(timeout=60)
    shown = drain(controller)
    assert proc.returncode == 0
    redraws = shown.decode().rstrip("\r\n").split("\r")  # a terminal turns the final "\n" into "\r\n"
    assert redraws[-1].startswith("100%|") and "| 50/50 [" in redraws[-1], shown
    assert "loss=0.020]" in redraws[-1] and max(len(r) for r in redraws) <= (columns or 80), shown
