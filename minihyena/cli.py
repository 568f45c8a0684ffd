"""Command line: ``minihyena <command>`` (also ``python -m minihyena <command>``)."""
from __future__ import annotations

import argparse
import sys


def _demo(args) -> int:
    """Causal FFT convolution against the direct sum, and its backward against finite differences."""
    import numpy as np

    from . import Tensor, functional as F
    from .testing import gradcheck

    rng = np.random.default_rng(args.seed)
    B, D, L = 2, 4, args.length
    u = rng.standard_normal((B, D, L))
    k = rng.standard_normal((D, L))
    skip = rng.standard_normal(D)
    y = F.fftconv(Tensor(u), Tensor(k), Tensor(skip)).numpy()
    direct = np.zeros_like(u)
    for t in range(L):
        for s in range(t + 1):
            direct[..., t] += k[:, s] * u[..., t - s]
    direct += skip[:, None] * u
    err = float(np.abs(y - direct).max())
    print(f"fftconv vs direct O(L^2) sum, B={B} D={D} L={L}: max abs difference {err:.2e}")
    args_t = [Tensor(a, dtype=np.float64, requires_grad=True) for a in (u, k, skip)]
    gradcheck(F.fftconv, args_t, name="fftconv")
    print("fftconv backward vs central differences (u, k, skip): gradient check passed")
    return 0 if err < 1e-9 else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minihyena", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="check the FFT convolution and its gradient")
    d.add_argument("--length", type=int, default=64)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_demo)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
