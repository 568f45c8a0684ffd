"""Each constant and formula is defined once: in its op, not again in a backend.

The ops' reference code (``minihyena/functional``, ``minihyena/optim.py``) owns the maths; a backend
holds the array module, allocation, FFTs and kernel registration, and its fused kernels call the
op's own formula functions (``gelu_grad``, ``adamw_param``, ...). These checks read the source:

* a float constant with four or more significant digits (GELU's 0.044715, say) appears in one file;
* no arithmetic expression of three or more operations in a backend module has the shape of one in
  an op's module (names and constants ignored), so a formula restated in a kernel is found;
* no backend carries kernel source text (CUDA C strings calling tanh, exp, sqrt, log).
"""
from __future__ import annotations

import ast
import collections
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "minihyena"
REFERENCE = sorted((PACKAGE / "functional").glob("*.py")) + [PACKAGE / "optim.py"]
BACKENDS = sorted((PACKAGE / "backends").glob("*.py"))


class _Shape(ast.NodeTransformer):
    """An expression's shape: every name, constant, subscript and module attribute becomes ``_``."""

    def _blank(self, node):
        return ast.copy_location(ast.Name(id="_", ctx=ast.Load()), node)

    visit_Name = visit_Constant = visit_Subscript = _blank

    def visit_Attribute(self, node):  # np.sqrt, xp.sqrt, math.sqrt: the same function
        return ast.copy_location(ast.Name(id="_." + node.attr, ctx=ast.Load()), node)


def formulas(path: Path, min_ops: int = 3) -> dict[str, str]:
    """Shape -> where, for every arithmetic expression of at least ``min_ops`` binary operations."""
    found = {}
    for fn in ast.walk(ast.parse(path.read_text())):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.BinOp) and sum(isinstance(n, ast.BinOp) for n in ast.walk(node)) >= min_ops:
                shape = ast.dump(_Shape().visit(ast.parse(ast.unparse(node), mode="eval")))
                found.setdefault(shape, f"{path.name}:{fn.lineno} {fn.name}: {ast.unparse(node)}")
    return found


def test_float_constants_are_defined_once():
    where = collections.defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, float):
                if len(re.sub(r"\D", "", repr(node.value)).strip("0")) >= 4:
                    where[node.value].add(str(path.relative_to(PACKAGE)))
    twice = {value: sorted(files) for value, files in where.items() if len(files) > 1}
    assert not twice, f"constants defined in more than one file (define once, import elsewhere): {twice}"


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda p: p.name)
def test_no_backend_restates_an_ops_formula(backend):
    ops = {}
    for path in REFERENCE:
        ops.update(formulas(path))
    restated = [f"{where}\n    restates {ops[shape]}" for shape, where in formulas(backend).items() if shape in ops]
    assert not restated, "a backend restates an op's formula; call the op's formula function instead:\n" + "\n".join(restated)


@pytest.mark.parametrize("backend", BACKENDS, ids=lambda p: p.name)
def test_no_backend_carries_kernel_source_text(backend):
    strings = [n.value for n in ast.walk(ast.parse(backend.read_text()))
               if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    code = [s for s in strings if re.search(r"\b(tanh|exp|sqrt|log|erf)\s*\(", s) and ";" in s]
    assert not code, f"{backend.name} carries kernel source with a formula of its own: {code}"


def test_the_checks_find_a_restated_formula(tmp_path):
    """The shape check sees through renamed variables, subscripts and constants."""
    ref = tmp_path / "ref.py"
    ref.write_text("def grad(g, x, t):\n    return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t))\n")
    kernel = tmp_path / "kernel.py"
    kernel.write_text("def k(g, x, th, dx, half, one):\n    for i in range(3):\n"
                      "        dx[i] = g[i] * (half * (one + th[i]) + half * x[i] * (one - th[i] * th[i]))\n")
    shapes = formulas(ref, min_ops=3)
    assert any(shape in shapes for shape in formulas(kernel, min_ops=3))
