"""The documentation site builds with ``mkdocs build --strict`` and works offline.

Skipped unless the docs tools are installed (``pip install -e ".[docs]"``). The build executes
the tutorials, here with ``MINIHYENA_SMOKE=1`` so that it stays quick.
"""
from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
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
    "06_associative_recall": "Hyena solves recall: ",
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


# ---------------------------------------------------------------------------- the pages at 1280 px
# In a 1280 px window (1265 px beside a scroll bar) Material shows the navigation, the page and its table
# of contents side by side, which leaves the page a column of under 700 px. A table wider than that
# scrolls sideways inside its box and hides its last columns, and a display formula wider than that is
# cut at the column's edge. Material gives every header cell a minimum width of 5rem (100 px): seven
# columns are already too many.
MAX_TABLE_COLUMNS = 6
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def _markdown_tables(text: str):
    """(line number, columns) of each pipe table of a Markdown text, read from its delimiter row."""
    fenced = False
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and i and re.fullmatch(r"\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*", line) and "|" in line:
            yield i, len([cell for cell in line.strip().strip("|").split("|")])


def test_markdown_tables_fit_the_column():
    wide = [f"{path.relative_to(ROOT)}:{line}: {columns} columns"
            for path in sorted((ROOT / "docs").rglob("*.md"))
            for line, columns in _markdown_tables(path.read_text(encoding="utf-8"))
            if columns > MAX_TABLE_COLUMNS]
    assert not wide, (f"tables of more than {MAX_TABLE_COLUMNS} columns hide their last columns in a 1280 px window; "
                      "split them or move columns into the text:\n" + "\n".join(wide))


# Injected into a copy of each page: once KaTeX has typeset and the fonts are in, list every table
# column that lies beyond the box clipping the table and every display formula wider than its box.
_MEASURE = """<script>
window.addEventListener("load", function () {
  document.fonts.ready.then(function () { setTimeout(function () {
    var art = document.querySelector("article"), out = {typeset: 0, wide: []};
    function visibleRight(el) {  // the right edge of the intersection of the boxes that clip el
      var right = art.getBoundingClientRect().right;
      for (var a = el; a && a !== art; a = a.parentElement) {
        if (getComputedStyle(a).overflowX !== "visible") right = Math.min(right, a.getBoundingClientRect().right);
      }
      return right;
    }
    art.querySelectorAll("table").forEach(function (table) {
      var right = visibleRight(table), cells = table.rows.length ? table.rows[0].cells : [];
      var hidden = Array.prototype.filter.call(cells, function (c) { return c.getBoundingClientRect().right > right + 1; });
      if (hidden.length) out.wide.push("table, columns " + hidden.map(function (c) { return JSON.stringify(c.textContent.trim()); }).join(", ") + " hidden");
    });
    art.querySelectorAll(".katex-display").forEach(function (el) {
      out.typeset += 1;
      var tex = el.querySelector("annotation");
      if (el.scrollWidth > el.clientWidth + 1) out.wide.push("formula " + el.scrollWidth + " px wide in " + el.clientWidth + " px: " + (tex ? tex.textContent : "").trim().slice(0, 70));
    });
    var pre = document.createElement("pre");
    pre.id = "minihyena-width-check";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }, 100); });
});
</script>"""


def _measure(page: Path) -> dict:
    probe = page.with_name("_width_check.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _MEASURE + "</body>"), encoding="utf-8")
    try:
        with tempfile.TemporaryDirectory() as profile:
            proc = subprocess.run(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}",
                 "--allow-file-access-from-files", "--window-size=1280,900", "--virtual-time-budget=10000",
                 "--dump-dom", probe.as_uri()],
                capture_output=True, text=True, timeout=120,
            )
    finally:
        probe.unlink()
    found = re.search(r'<pre id="minihyena-width-check">(.*?)</pre>', proc.stdout, re.S)
    if found is None:
        return {"error": f"the measurement did not run (chromium exit status {proc.returncode}): {proc.stderr[-300:]}"}
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium to look at the pages with: apt-get install chromium")
def test_pages_fit_a_1280px_window(site: Path):
    pages = sorted(p for p in site.rglob("index.html") if p.parent.name not in ("search", "404"))
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(pages, pool.map(_measure, pages)))
    problems = [f"{page.parent.relative_to(site)}: {item}" for page, result in results.items()
                for item in ([result["error"]] if "error" in result else result["wide"])]
    assert not problems, "in a 1280 px window:\n" + "\n".join(problems)
    for name in ("concepts/fft-convolution", "concepts/gating", "tutorials/03_implicit_filters"):
        assert results[site / name / "index.html"]["typeset"] >= 2, f"{name}: KaTeX typeset no display formula"
