r"""Gradient checking, for the tests and for anyone writing a new primitive.

:func:`gradcheck` compares a hand-derived backward with finite differences in two ways:

1. **Random projection** (checks the whole Jacobian in one number per argument): with a random
   upstream vector $v$ and a random direction $d$,
   $\langle \nabla_x \langle v, f(x)\rangle, d\rangle$ from the backward must equal the central
   difference $\big(\langle v, f(x + \epsilon d)\rangle - \langle v, f(x - \epsilon d)\rangle\big) / 2\epsilon$.
2. **Central differences at a few random indices**, so a failure names the element.

Use float64 inputs: in float32 the finite differences themselves are too noisy for tight tolerances.
The check runs on the backend the inputs live on, fused kernels included: build the inputs inside
``with use_backend(name):`` to check that backend (the test suite checks every available one).
"""
from __future__ import annotations

import numpy as np

from .autograd import Tensor, no_grad
from .backends.strict_backend import DeviceArray, StrictBackend, count_syncs

__all__ = ["gradcheck", "GradcheckError", "DeviceArray", "StrictBackend", "count_syncs", "STRICT_TARGET"]

STRICT_TARGET = "minihyena.testing:StrictBackend"
"""Register the strict stand-in device with ``register_backend("strict", STRICT_TARGET)`` (the test suite does)."""


class GradcheckError(AssertionError):
    """The analytic and numeric gradients disagree; the message names the op, argument and index."""


def _objective(fn, inputs, v) -> float:
    with no_grad():
        out = fn(*inputs)
    return float((out.numpy() * v).sum())


def gradcheck(
    fn,
    inputs,
    *,
    name: str | None = None,
    eps: float = 1e-6,
    rtol: float = 1e-6,
    atol: float = 1e-10,
    n_points: int = 3,
    seed: int = 0,
) -> bool:
    """Check ``fn``'s backward against finite differences; raise :class:`GradcheckError` on mismatch.

    ``fn(*inputs)`` must return one Tensor and be deterministic. Every input Tensor with
    ``requires_grad`` is checked. A comparison passes when
    ``|analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|) + floor``, where ``floor`` is
    the round-off of the finite difference itself, ``8 * eps_float64 * sum|v * f(x)| / eps``.
    Returns True on success.
    """
    name = name or getattr(fn, "__name__", "fn")
    inputs = list(inputs)
    rng = np.random.default_rng(seed)
    for i, t in enumerate(inputs):
        if isinstance(t, Tensor) and t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck({name}): argument {i} is {t.dtype}; use float64 for gradient checks")
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError(f"gradcheck({name}): no input requires grad")

    for i in checked:
        inputs[i].grad = None
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck({name}): fn must return a Tensor, got {type(out).__name__}")
    v = rng.standard_normal(out.shape)
    out.backward(out.backend.asarray(v, dtype=out.dtype))
    floor = 8 * np.finfo(np.float64).eps * float(np.abs(out.numpy() * v).sum()) / eps

    def close(a: float, n: float) -> bool:
        return abs(a - n) <= atol + rtol * max(abs(a), abs(n)) + floor

    for i in checked:
        t = inputs[i]
        analytic = np.zeros(t.shape) if t.grad is None else t.backend.to_numpy(t.grad).astype(np.float64)
        base = t.data  # restored after each evaluation (a non-contiguous input stays as given)

        def phi(delta):
            t.data = base + t.backend.asarray(delta, dtype=t.dtype)
            try:
                return _objective(fn, inputs, v)
            finally:
                t.data = base

        # 1. the whole Jacobian along one random direction
        d = rng.standard_normal(t.shape)
        numeric = (phi(eps * d) - phi(-eps * d)) / (2 * eps)
        projected = float((analytic * d).sum())
        if not close(projected, numeric):
            raise GradcheckError(
                f"{name}: argument {i} {t.shape}: random projection of the gradient is {projected:.10g} "
                f"(backward) but {numeric:.10g} (central differences)"
            )
        # 2. single elements, to say where a mismatch is
        if t.size:
            for flat in rng.choice(t.size, size=min(n_points, t.size), replace=False):
                idx = np.unravel_index(int(flat), t.shape)
                e = np.zeros(t.shape)
                e[idx] = eps
                numeric = (phi(e) - phi(-e)) / (2 * eps)
                a = float(analytic[idx])
                if not close(a, numeric):
                    raise GradcheckError(
                        f"{name}: argument {i} {t.shape} at index {tuple(int(j) for j in idx)}: "
                        f"backward gives {a:.10g}, central differences {numeric:.10g}"
                    )
    return True
