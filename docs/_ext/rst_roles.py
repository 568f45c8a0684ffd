"""Griffe extension for the API page: show Sphinx roles in docstrings as inline code.

The docstrings use Markdown with ``$...$`` math, plus a few Sphinx roles such as
``:class:`~minihyena.autograd.Function``` that Markdown would print literally. This turns
each role into inline code; a leading ``~`` keeps only the last dotted name, as Sphinx does.
"""
from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|obj|exc|data|const):`(~?)([^`]+)`")


def _code(match: re.Match) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class RstRoles(griffe.Extension):
    """Rewrite ``:role:`target``` to ```target``` in every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_code, obj.docstring.value)
