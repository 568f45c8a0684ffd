"""Argument types for the command line: every numeric flag is range-checked when it is parsed.

``--d-model 0`` or ``--filter-w nan`` stops at once with argparse's one-line message naming the flag
(``minihyena train: --d-model must be an integer >= 1, got 0``) and exit status 2, instead of failing later
deep inside NumPy or as a diverging loss.
"""
from __future__ import annotations

import argparse
import math
import re


class UsageError(ValueError):
    """A command line that does not parse; the message names the flag."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``--flag must be ..., got X`` (exit status 2 from main)."""

    def error(self, message: str):
        flag = re.match(r"^argument ([^:]+): (must .*)$", message, flags=re.S)
        if flag:  # a value this module's types refused
            raise UsageError(f"{flag[1]} {flag[2]}")
        raise UsageError(f"{message} (see {self.prog} --help)")


def integer(low: int | None = None, high: int | None = None):
    """An ``int`` in ``[low, high]`` (either bound optional)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be an integer <= {high}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


def number(low: float | None = None, high: float | None = None, low_ok: bool = True, high_ok: bool = True):
    """A finite ``float`` above ``low`` and below ``high`` (each bound included unless ``*_ok`` is False)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        too_low = low is not None and (value < low if low_ok else value <= low)
        too_high = high is not None and (value > high if high_ok else value >= high)
        if not math.isfinite(value) or too_low or too_high:
            parts = []
            if low is not None:
                parts.append(f"{'>=' if low_ok else '>'} {low:g}")
            if high is not None:
                parts.append(f"{'<=' if high_ok else '<'} {high:g}")
            raise argparse.ArgumentTypeError(f"must be a finite number{' ' + ' and '.join(parts) if parts else ''}, got {value!r}")
        return value

    parse.__name__ = "number"
    return parse


def choice(names):
    """One of ``names`` (argparse's ``choices``, with this module's one-line message)."""

    def parse(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(names)}, got {text!r}")
        return text

    parse.__name__ = "choice"
    return parse


def path(text: str) -> str:
    """A file or folder name: anything but an empty string (which would mean the current folder or a default)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a file or folder, got an empty string")
    return text


def flag_names(exc: Exception, flags: dict[str, str]) -> ValueError:
    """A configuration's refusal (``HyenaConfig: n_head must divide d_model``) in the words of the command
    line: each field named by the flag that sets it (``--n-head must divide --d-model``)."""
    message = str(exc).removeprefix("HyenaConfig: ")
    for field, flag in flags.items():
        message = re.sub(rf"\b{field}\b", flag, message)
    return ValueError(message)


#: Shared flag types.
COUNT = integer(1)  # sizes and counts: at least one
NON_NEGATIVE = integer(0)
SEED = integer(0, 2**63 - 1)  # numpy seeds are non-negative
POSITIVE = number(0.0, low_ok=False)
