"""benchmarks/recall_plot.py --solve: when each run first reached the target accuracy."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from recall_plot import first_reach, solve_table  # noqa: E402


def _run(mixer, seed, accs, seconds_per_eval=10.0, L=256):
    curve = [{"step": 25 * (i + 1), "seconds": seconds_per_eval * (i + 1), "accuracy": a} for i, a in enumerate(accs)]
    return {"mixer": mixer, "vocab_size": 10, "seq_len": L, "seed": seed, "lr": 3e-3, "steps": curve[-1]["step"],
            "seconds": curve[-1]["seconds"], "accuracy": accs[-1], "curve": curve}


def test_first_reach_is_the_first_evaluation_at_or_above_the_target():
    r = _run("hyena", 0, [0.3, 0.89, 0.9, 0.95, 0.85])
    assert first_reach(r, 0.9)["step"] == 75  # exactly at the target counts; a later dip does not undo it
    assert first_reach(r, 0.96) is None


def test_solve_table_counts_seeds_and_reports_unsolved_runs():
    runs = [_run("hyena", 0, [0.5, 0.95]), _run("hyena", 1, [0.5, 0.6, 0.92], seconds_per_eval=20),
            _run("attention-rope", 0, [0.5, 0.55, 0.6])]
    table = solve_table(runs, 0.9).splitlines()
    hyena = next(line for line in table if "| hyena," in line)
    attn = next(line for line in table if "| attention-rope," in line)
    assert "| 2 of 2 | 20 (50), 60 (75) | 20 (50), 60 (75) |" in hyena
    assert "| 0 of 1 | - | 30 (75) | 60.0% |" in attn
    assert all(line.count("|") == 7 for line in table)  # six columns: the docs' limit


def test_solve_table_orders_cells_by_vocabulary_then_length_as_numbers():
    runs = [_run(m, 0, [0.95], L=L) for L in (1024, 256, 4096) for m in ("hyena", "attention-rope")]
    runs[0]["vocab_size"] = 20  # the first run read is the only one at vocabulary 20
    rows = [line.split("|")[1:3] for line in solve_table(runs, 0.9).splitlines()[2:]]
    rows = [(*cell.split(","), mixer.split(",")[0]) for cell, mixer in rows]
    assert [(v.strip(), L.strip(), m.strip()) for v, L, m in rows] == [
        ("10", "256", "hyena"), ("10", "256", "attention-rope"), ("10", "1024", "attention-rope"),
        ("10", "4096", "hyena"), ("10", "4096", "attention-rope"), ("20", "1024", "hyena")]


def test_solve_plot_is_written(tmp_path):
    runs = [_run("hyena", s, [0.5, 0.95], L=L) for s in (0, 1) for L in (256, 1024)]
    runs += [_run("attention-rope", 0, [0.5, 0.6], L=L) for L in (256, 1024)]
    path = tmp_path / "solve.json"
    path.write_text(json.dumps({"settings": {"clock": "cpu"}, "runs": runs}))
    out = tmp_path / "solve.png"
    res = subprocess.run([sys.executable, str(BENCH / "recall_plot.py"), str(path), "--solve", "0.9", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 1000 and "wrote" in res.stdout and "2 of 2" in res.stdout
