"""benchmarks/data_scale.py at a tiny size: every part runs and its figures are consistent."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "data_scale.py"


@pytest.mark.slow
def test_data_scale_measures_prepare_first_step_and_bits_per_byte(tmp_path):
    pytest.importorskip("tokenizers")
    out = tmp_path / "ds.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--work", str(tmp_path / "w"), "--size-mb", "3", "--bpe", "300",
                           "--bpe-mb", "1", "--train-seconds", "1", "--backend", "numpy", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    prep = {r["tokenizer"]: r for r in result["prepare"]}
    assert prep["char"]["tokens"] == prep["byte"]["tokens"] >= 3 * 10**6  # an ASCII corpus: a byte a character
    assert prep["bpe:300"]["tokens"] < prep["char"]["tokens"] / 3  # 1 MB of it, in merged pieces
    assert all(r["peak_rss_mb"] > 10 and r["mb_per_s"] > 0 for r in result["prepare"])
    assert [r["data"] for r in result["first_step"]] == ["prepared folder", "text file, first run (prepares its cache)",
                                                       "text file, cache reused"]
    bpb = {r["tokenizer"]: r for r in result["bits_per_byte"]}
    assert bpb["byte"]["bits_per_byte"] == pytest.approx(bpb["byte"]["val_nats_per_token"] / 0.6931471805599453, abs=1e-3)
    assert bpb["bpe:300"]["bytes_per_token"] > 1.2 and bpb["char"]["vocab"] < 256 == bpb["byte"]["vocab"]
    assert proc.stdout.strip().splitlines()[-1].startswith("data_scale: prepare char ")
