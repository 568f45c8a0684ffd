"""benchmarks/recall_solve.sh at a tiny size: the sweep, the learning-rate rule, the grid, and resuming."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "recall_solve.sh"


def _run(out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "SWEEP_SECONDS": "1", "CAP_SECONDS": "1", "CELLS": "10 32 4", "SEEDS": "1", "BACKEND": "numpy"}
    return subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_recall_solve_sweeps_picks_each_mixers_lr_runs_the_grid_and_resumes(tmp_path):
    out = tmp_path / "solve"
    res = _run(out)
    assert res.returncode == 0, res.stderr
    sweeps = sorted(p.name for p in out.glob("sweep_*.json"))
    assert len(sweeps) == 6  # three learning rates for each of the two mixers
    runs = {p.name: json.loads(p.read_text())["runs"][0] for p in out.glob("sweep_*.json")}
    chosen = dict(line.split() for line in (out / "chosen_lr.txt").read_text().splitlines())
    assert set(chosen) == {"hyena", "attention-rope"}
    for mixer, lr in chosen.items():  # the rule: the fastest to the target, else the lowest answer cross-entropy
        mine = [r for r in runs.values() if r["mixer"] == mixer]
        solved = [r for r in mine if r["stopped"] == "target"]
        best = min(solved, key=lambda r: r["seconds"]) if solved else min(mine, key=lambda r: r["test_loss"])
        assert float(lr) == best["lr"]
    for mixer in chosen:
        grid = json.loads((out / f"grid_V10_L32_{mixer}_s1.json").read_text())
        assert grid["runs"][0]["lr"] == float(chosen[mixer]) and grid["runs"][0]["seed"] == 1
        assert grid["runs"][0]["seq_len"] == 32 and grid["runs"][0]["vocab_size"] == 10
    assert not list(out.glob("*.part"))
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*_*.json")}
    again = _run(out)  # every run's JSON exists: nothing is trained or rewritten
    assert again.returncode == 0, again.stderr
    assert "sweep_" not in again.stdout and "grid_" not in again.stdout.split("done:")[0]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_*.json")} == stamps
