"""mkdocs hook: run the tutorials with one BLAS thread unless the caller chose otherwise.

OpenBLAS threads spin while they wait for work. On a small machine that is also busy with
something else (two cores running a test suite, say), the spinning thread competes with the
tutorial itself, and a training tutorial was measured to run five to fifteen times slower
with two BLAS threads than with one. The notebook kernels inherit this process's environment,
so setting the variables here, before any kernel starts, keeps the build time predictable.
A value already set in the environment is left alone.
"""
from __future__ import annotations

import os

# Not OMP_NUM_THREADS: that one would also limit the threads of compiled (Numba) kernels.
_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def on_startup(command: str, dirty: bool, **kwargs) -> None:
    for name in _VARIABLES:
        os.environ.setdefault(name, "1")
