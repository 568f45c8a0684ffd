"""The documentation site builds with ``mkdocs build --strict`` and works offline.

Skipped unless the docs tools are installed (``pip install -e ".[docs]"``). The build executes
the tutorials, here with ``MINIHYENA_SMOKE=1`` so that it stays quick.
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
DOCS_MODULES = ("mkdocs", "material", "mkdocs_jupyter", "mkdocstrings_handlers.python", "ipykernel", "matplotlib")


def _missing() -> list[str]:
    missing = []
    for name in DOCS_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # the parent package of a dotted name is absent
            found = False
        if not found:
            missing.append(name)
    return missing


pytestmark = pytest.mark.skipif(
    bool(_missing()),
    reason=f"docs tools not installed ({', '.join(_missing())}); pip install -e '.[docs]'",
)

# A tag that would make the browser fetch something from another host.
REMOTE = re.compile(
    r"""<(?:script|link|img|iframe|source|embed)\b[^>]*?\b(?:src|href)\s*=\s*["']?(?:https?:)?//"""
    r"""|@import\s+(?:url\()?["']?(?:https?:)?//|\bimport\(\s*["'](?:https?:)?//""",
    re.I,
)
KATEX_FILES = ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js", "fonts/KaTeX_Main-Regular.woff2", "LICENSE")
MATH_PAGES = ("concepts/fft-convolution", "concepts/fft-backward", "tutorials/01_fft_convolution")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"  # the build log goes beside it
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", MINIHYENA_SMOKE="1", MPLBACKEND="Agg")
    env.pop("MINIHYENA_BACKEND", None)
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed ({proc.returncode}):\n{proc.stderr[-8000:]}", pytrace=False)
    (out.parent / "build.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    return out


def _page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text(encoding="utf-8")


def test_katex_is_vendored(site: Path):
    for name in KATEX_FILES:
        assert (site / "assets" / "katex" / name).is_file(), f"assets/katex/{name} is missing from the built site"
    assert (site / "assets" / "js" / "katex-init.js").is_file()


@pytest.mark.parametrize("name", MATH_PAGES)
def test_math_pages_load_local_katex(site: Path, name: str):
    html = _page(site, name)
    for asset in ("assets/katex/katex.min.css", "assets/katex/katex.min.js",
                  "assets/katex/contrib/auto-render.min.js", "assets/js/katex-init.js"):
        assert re.search(rf"""(?:src|href)="(?:\.\./)*{re.escape(asset)}""", html), f"{name}: {asset} is not loaded"
    assert "mathjax" not in html.lower(), f"{name}: a MathJax loader is left in the page"


def test_no_page_loads_remote_resources(site: Path):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 8, f"only {len(pages)} pages were built"
    for page in pages:
        html = page.read_text(encoding="utf-8")
        hit = REMOTE.search(html)
        assert hit is None, f"{page.relative_to(site)} loads a remote resource: {html[hit.start():hit.end() + 80]!r}"
        assert "fonts.googleapis" not in html and "fonts.gstatic" not in html, f"{page.relative_to(site)}: web fonts"


def test_concept_pages_have_math(site: Path):
    for name in ("concepts/fft-convolution", "concepts/fft-backward", "concepts/gradient-checking",
                 "concepts/implicit-filters", "concepts/gating", "concepts/complexity", "concepts/language-model"):
        html = _page(site, name)
        assert html.count('class="arithmatex"') >= 5, f"{name}: expected formulas for KaTeX to typeset"


def test_tutorials_were_executed(site: Path):
    first = _page(site, "tutorials/01_fft_convolution")
    assert "max |fft - direct| =" in first, "tutorial 1's printed output is missing: was it executed?"
    assert first.count("data:image/png;base64,") >= 2, "tutorial 1 should show its two plots"
    assert "$$" in first, "the tutorial's display math should reach the page for KaTeX"
    second = _page(site, "tutorials/02_backward_pass")
    assert "gradcheck passed: True" in second and "caught: ForgotConjugate" in second
    assert "Traceback" not in first + second


# A line of printed output that each later tutorial produces only when its checks came out right.
TUTORIAL_OUTPUT = {
    "03_implicit_filters": "short filters are prefixes: True",
    "04_data_controlled_matrix": "no gates, Toeplitz (constant diagonals): True",
    "05_train_tiny_lm": "same sample from the reloaded model: True",
    "06_associative_recall": "recall (look up the key)   100.0%",
    "07_backends": "same logits: True",
}


@pytest.mark.parametrize("name", sorted(TUTORIAL_OUTPUT))
def test_later_tutorials_were_executed(site: Path, name: str):
    html = _page(site, f"tutorials/{name}")
    assert TUTORIAL_OUTPUT[name] in html, f"tutorial {name}: expected output {TUTORIAL_OUTPUT[name]!r} is missing"
    assert "Traceback" not in html, f"tutorial {name} shows a traceback"
    if name != "07_backends":  # 07 prints timings and has no plot
        assert "data:image/png;base64," in html, f"tutorial {name} should show its plots"


def test_complexity_page_shows_the_scaling_plot(site: Path):
    assert (site / "assets" / "scaling.png").is_file(), "docs/assets/scaling.png (benchmarks/scaling.py --plot) is missing"
    html = _page(site, "concepts/complexity")
    assert re.search(r'<img[^>]+src="(?:\.\./)+assets/scaling\.png"', html), "the complexity page does not show the plot"


def test_api_reference(site: Path):
    html = _page(site, "api")
    for name in ("minihyena.autograd.Tensor", "minihyena.functional.FFTConv", "minihyena.backends.get_backend",
                 "minihyena.testing.gradcheck", "minihyena.backends.Backend.causal_xcorr",
                 "minihyena.nn.HyenaFilter", "minihyena.nn.HyenaOperator", "minihyena.nn.HyenaLM",
                 "minihyena.nn.attention.CausalSelfAttention", "minihyena.optim.AdamW", "minihyena.train.Trainer",
                 "minihyena.checkpoint.load_model", "minihyena.generate.generate", "minihyena.data.CharTokenizer",
                 "minihyena.data.synthetic.associative_recall", "minihyena.recall.train_task",
                 "minihyena.recall.TaskConfig", "minihyena.flops.hyena_flops"):
        assert f'id="{name}"' in html, f"the API page has no entry for {name}"


@pytest.mark.parametrize("noise", [
    "Kernel is running over TCP without encryption",  # docs/_ext/kernels.py gives the kernels IPC sockets
    "requires either Black or Ruff",  # ruff is in the docs extra: signatures are formatted
])
def test_build_log_is_quiet(site: Path, noise: str):
    log = (site.parent / "build.log").read_text(encoding="utf-8")
    assert noise not in log, f"the docs build printed: {noise}"


def test_no_build_litter(site: Path):
    litter = [p for p in site.rglob("*") if p.name == "__pycache__" or p.suffix in {".pyc", ".nbi", ".nbc", ".py"}]
    assert not litter, f"files that should not be published: {litter[:5]}"
