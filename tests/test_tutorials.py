"""Every tutorial runs top to bottom as a script, in its small "smoke" setting.

The tutorials are jupytext percent-format scripts; the docs build executes them as notebooks,
but a plain subprocess is the quickest check and a failure points at the line. Each run sets
``MINIHYENA_SMOKE=1`` (small sizes), ``MPLBACKEND=Agg`` (no display needed) and
``MINIHYENA_READONLY_GRADS=1`` (a backward that edits its incoming gradient fails, as in the tests).
A tutorial's claims are ``assert`` statements, so the exit status checks them; a claim printed
straight from a comparison (``print("same:", np.allclose(...))``) is flagged.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9]*.py"))

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def test_tutorials_exist():
    assert TUTORIALS, f"no tutorials found in {ROOT / 'tutorials'}"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_runs(path: Path, tmp_path: Path):
    if not HAVE_MATPLOTLIB and "matplotlib" in path.read_text(encoding="utf-8"):
        pytest.skip(f"{path.name} plots with matplotlib, which is not installed: pip install -e '.[docs]'")
    env = dict(os.environ)
    env["MINIHYENA_SMOKE"] = "1"
    env["MPLBACKEND"] = "Agg"
    env["MINIHYENA_READONLY_GRADS"] = "1"
    env.pop("MINIHYENA_BACKEND", None)  # the tutorials show the reference NumPy backend
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(path)],
        cwd=tmp_path,  # a tutorial must not depend on, or write into, the working directory
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{path.name} exited with status {proc.returncode}\n"
            f"--- stderr ---\n{proc.stderr[-6000:]}\n--- stdout (tail) ---\n{proc.stdout[-2000:]}",
            pytrace=False,
        )


# a print whose argument is a comparison: the claim it shows would never fail the run
_PRINTED_CLAIM = re.compile(r"print\(.*(np\.(allclose|array_equal|isclose|all)\(|\s(==|<=|>=|<|>)\s)")


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_claims_are_asserted(path: Path):
    lines = path.read_text(encoding="utf-8").splitlines()
    printed = [f"line {i}: {line.strip()}" for i, line in enumerate(lines, 1)
               if _PRINTED_CLAIM.search(line) and not line.lstrip().startswith("#")]
    assert not printed, f"{path.name}: compute the claim, assert it, then print it:\n" + "\n".join(printed)
    if int(path.name[:2]) >= 3:
        assert any(line.lstrip().startswith("assert ") for line in lines), f"{path.name} asserts nothing"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_is_a_documented_notebook(path: Path):
    """Percent format with a title cell, and published on the site through docs/tutorials/."""
    text = path.read_text(encoding="utf-8")
    assert "# %% [markdown]\n# # " in text, f"{path.name}: the first text cell should start with a '# ' title"
    assert "MINIHYENA_SMOKE" in text, f"{path.name}: honour MINIHYENA_SMOKE=1 to keep the test run short"
    link = ROOT / "docs" / "tutorials" / path.name
    assert link.exists(), f"{path.name} is not linked into the site: expected {link} (a symlink to {path})"
    assert link.resolve() == path.resolve(), f"{link} should point at {path}"
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert f"tutorials/{path.name}" in nav, f"{path.name} is missing from the nav in mkdocs.yml"
