"""benchmarks/backend_speed.py: the round-by-round ratios against PyTorch (no torch needed here)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from backend_speed import _paired_ratios, main  # noqa: E402


def _run(backend, r, median):
    return {"backend": backend, "B": 4, "L": 64, "round": r, "median": median}


def test_paired_ratios_take_each_rounds_faster_torch_eager():
    runs = {
        ("numba", 4, 64): [_run("numba", 0, 0.8), _run("numba", 1, 1.6), _run("numba", 2, 0.9)],
        ("torch", 4, 64): [_run("torch", 0, 1.0), _run("torch", 1, 2.0)],  # round 2: torch-default only
        ("torch-default", 4, 64): [_run("torch-default", 0, 1.6), _run("torch-default", 1, 4.0),
                                   _run("torch-default", 2, 1.8)],
    }
    assert _paired_ratios(runs, "numba", 4, 64) == pytest.approx([0.8, 0.8, 0.5])
    assert _paired_ratios(runs, "numba", 8, 64) == []  # no such size
    del runs["torch", 4, 64], runs["torch-default", 4, 64]
    assert _paired_ratios(runs, "numba", 4, 64) == []  # no torch in any round


def test_rounds_print_the_per_round_line_without_torch(capsys):
    assert main(["--sizes", "1x8", "--rounds", "2", "--steps", "1", "--warmup", "0", "--backends", "numpy",
                 "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert "median over 2 rounds" in out
    assert "per round" not in out  # no torch: no ratios to print
