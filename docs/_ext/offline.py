"""mkdocs hook: the built site must load nothing from the network.

nbconvert's notebook template, which mkdocs-jupyter uses, embeds two loaders that point at a
CDN: a MathJax block (here with an empty URL, since KaTeX typesets the math) and a module
script that imports mermaid.js when a notebook contains a mermaid diagram. Neither is needed,
so both are removed from the rendered tutorials. Every finished page is then scanned, and a
tag that would fetch a remote resource is logged as a warning, which fails
``mkdocs build --strict``.
"""
from __future__ import annotations

import logging
import re

log = logging.getLogger("mkdocs.hooks.offline")

_MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)
_MODULE_SCRIPT = re.compile(r'<script type="module">.*?</script>', re.S)
# <script src=...>, <link href=...>, <img src=...>, <iframe src=...>, CSS @import and a JavaScript
# import() of an absolute http(s) or protocol-relative URL. Plain <a href> links are fine.
_REMOTE = re.compile(
    r"""<(?:script|link|img|iframe|source|embed)\b[^>]*?\b(?:src|href)\s*=\s*["']?(?:https?:)?//"""
    r"""|@import\s+(?:url\()?["']?(?:https?:)?//"""
    r"""|\bimport\(\s*["'](?:https?:)?//""",
    re.I,
)


def _drop_mermaid(match: re.Match) -> str:
    script = match.group(0)
    return "" if "mermaid" in script else script


def on_page_content(html: str, page, **kwargs) -> str:
    if 'class="jupyter-wrapper"' not in html:
        return html
    html = _MATHJAX.sub("", html)
    if "jp-Mermaid" not in html.replace(".jp-Mermaid", ""):  # no diagram, only the CSS rules
        html = _MODULE_SCRIPT.sub(_drop_mermaid, html)
    return html


def on_post_page(output: str, page, **kwargs) -> str:
    for match in _REMOTE.finditer(output):
        snippet = output[match.start() : match.end() + 60].split(">")[0]
        log.warning("%s loads a remote resource, the site would not work offline: %s", page.file.src_uri, snippet)
    return output
