"""benchmarks/lm_compare.py: the --quick pipeline end to end, and the summary arithmetic."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from lm_compare import at, reach  # noqa: E402

CURVE = [{"flops": 0, "cpu_s": 0, "tokens": 0, "val_loss": 4.0}, {"flops": 10, "cpu_s": 1, "tokens": 100, "val_loss": 3.0},
         {"flops": 20, "cpu_s": 2, "tokens": 200, "val_loss": 2.0}]


def test_reach_interpolates_between_evaluations():
    assert reach(CURVE, 2.5, "flops") == pytest.approx(15)
    assert reach(CURVE, 3.0, "cpu_s") == pytest.approx(1)
    assert reach(CURVE, 1.9, "flops") is None  # never reached
    assert at(CURVE, "tokens", 150) == pytest.approx(2.5)


def test_quick_runs_the_whole_pipeline(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "lm_compare.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"lm_compare: flops ratio hyena/gpt to reach gpt loss at \d+ = (\d+\.\d\d|n/a), "
                        r"val loss at equal time \d+: hyena \d+\.\d{3} gpt \d+\.\d{3}", last), last
    result = json.loads((tmp_path / "lm_compare_quick.json").read_text())
    assert {r["model"] for r in result["runs"]} == {"hyena", "gpt"}
    assert result["best_lr"]["hyena"] in result["setup"]["lrs"]
    for run in result["runs"]:
        assert run["curve"][-1]["cpu_s"] >= result["setup"]["budget"] or run["steps"] > 0
    from lm_compare_report import write_report

    files = write_report(result, tmp_path / "docs")
    text = Path(files[0]).read_text()
    assert "## Reading" in text and "Context 64" in text
    assert all(Path(f).stat().st_size > 0 for f in files)
