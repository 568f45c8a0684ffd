"""Backend registry: which array library and kernels the ops run on.

A backend supplies the array module (``xp``), its FFTs and optional fused kernels. It holds no
calculus: every op's forward and backward are written once, in :mod:`minihyena.functional`, and
a fused kernel only computes the same numbers faster (``Backend.fused``, ``Backend.paths``).

Selection order, first match wins:

1. an explicit ``backend=`` argument (``Tensor(x, backend="numba")``, ``get_backend("numba")``);
2. a scoped or global choice made with :func:`use_backend`;
3. the ``MINIHYENA_BACKEND`` environment variable;
4. ``"numpy"``, the readable reference.

``"auto"`` picks the fastest backend that works here: ``cupy`` if a CUDA device answers,
else ``numba`` if it is installed, else ``numpy``. A backend that is asked for by name but
cannot run raises :class:`BackendUnavailableError` with the reason; there is no silent fallback.

Using a backend never changes thread pools; :func:`configure_threads` is the explicit choice
(the command line makes it for the backend it runs on).
"""
from __future__ import annotations

import contextvars
import difflib
import importlib
import os

from .allocator import keep_freed_memory
from .base import Backend, BackendUnavailableError
from .threads import configure_threads

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "available_backends",
    "keep_freed_memory",
    "configure_threads",
    "get_backend",
    "known_backends",
    "register_backend",
    "use_backend",
]

ENV_VAR = "MINIHYENA_BACKEND"

# name -> "module:ClassName", imported lazily so an optional dependency is only touched on use.
_REGISTRY: dict[str, str] = {
    "numpy": "minihyena.backends.numpy_backend:NumpyBackend",
    "numba": "minihyena.backends.numba_backend:NumbaBackend",
    "cupy": "minihyena.backends.cupy_backend:CupyBackend",
}
_AUTO_ORDER = ("cupy", "numba", "numpy")
_INSTANCES: dict[str, Backend] = {}
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("minihyena_backend", default=None)


def register_backend(name: str, target: str) -> None:
    """Register a backend class under ``name``; ``target`` is ``"package.module:ClassName"``."""
    if ":" not in target:
        raise ValueError(f"backend target must look like 'package.module:ClassName', got {target!r}")
    _REGISTRY[name] = target
    _INSTANCES.pop(name, None)


def known_backends() -> list[str]:
    """Every registered backend name, available here or not."""
    return list(_REGISTRY)


def _unknown(name: str) -> ValueError:
    choices = known_backends() + ["auto"]
    hint = difflib.get_close_matches(name, choices, n=1)
    extra = f" Did you mean {hint[0]!r}?" if hint else ""
    return ValueError(f"unknown backend {name!r}; known backends: {', '.join(choices)}.{extra}")


def _load(name: str) -> Backend:
    """Import, instantiate and check one backend; raise if it cannot run here."""
    if name in _INSTANCES:
        return _INSTANCES[name]
    if name not in _REGISTRY:
        raise _unknown(name)
    module_name, _, cls_name = _REGISTRY[name].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except ImportError as exc:  # an optional dependency is missing
        raise BackendUnavailableError(f"backend {name!r} is unavailable: {exc}") from None
    reason = cls.unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(f"backend {name!r} is unavailable: {reason}")
    backend = cls()
    _INSTANCES[name] = backend
    return backend


def available_backends() -> list[str]:
    """Names of the registered backends that can run on this machine."""
    names = []
    for name in _REGISTRY:
        try:
            _load(name)
        except BackendUnavailableError:
            continue
        names.append(name)
    return names


def _resolve_auto() -> Backend:
    for name in _AUTO_ORDER:
        if name in _REGISTRY:
            try:
                return _load(name)
            except BackendUnavailableError:
                continue
    return _load("numpy")


def get_backend(name: str | Backend | None = None) -> Backend:
    """Return the backend for ``name``, or the current one (see the module docstring for the order)."""
    if isinstance(name, Backend):
        return name
    if name is None:
        name = _current.get()
    if name is None:
        name = os.environ.get(ENV_VAR) or "numpy"
    if not isinstance(name, str):
        raise TypeError(f"backend must be a name or a Backend, got {type(name).__name__}")
    name = name.strip().lower()
    if name == "auto":
        return _resolve_auto()
    return _load(name)


class use_backend:
    """Choose the backend for new tensors and ops.

    Called plainly it sets the choice for the rest of the program (this context); used as a
    context manager it restores the previous choice on exit::

        minihyena.use_backend("numba")          # from now on
        with minihyena.use_backend("numpy"):    # only inside the block
            ...
    """

    def __init__(self, name: str):
        self.backend = get_backend(name)  # raises now, before anything changes
        self._token = _current.set(self.backend.name)

    def __enter__(self) -> Backend:
        return self.backend

    def __exit__(self, *exc) -> None:
        _current.reset(self._token)

    def __repr__(self) -> str:
        return f"use_backend({self.backend.name!r})"
