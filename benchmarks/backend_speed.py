"""Train-step time of the HyenaLM on every available backend, and of an equivalent PyTorch CPU model.

    python benchmarks/backend_speed.py                 # default sizes, every available backend
    python benchmarks/backend_speed.py --sizes 4x1024 --steps 3 --no-torch
    python benchmarks/backend_speed.py --sizes 16x128,4x1024,1x8192 --blas-threads 2 --rounds 3 --compile

Each backend runs as ``configure_threads`` sets it up for the command line (the numpy backend's FFTs
on one thread per core, up to 4, or ``OMP_NUM_THREADS``).
PyTorch runs the same model (``torch_hyena.py``) three ways: "torch" eager on ``--blas-threads``
threads, "torch-default" eager on its own default threads, and "torch.compile" (with ``--compile``;
inductor's CPU code, compiled in the warm-up steps). "/ torch" and the last line compare against the
faster eager setting, torch's fair best without compilation. Its AdamW runs fused (one kernel for all
parameters, its fastest on a CPU), and both sides hold their parameter list instead of collecting it
every step, as ``Trainer`` does. ``--rounds R`` runs every worker R times
in turn, one size at a time (each size's workers back to back), and reports the median of the rounds'
medians, and each backend's ratio to torch eager taken round by round (median and range): on a busy
machine those paired ratios move less than the ratio of two medians. Every worker, torch's included, first calls
``minihyena.backends.keep_freed_memory()`` as the minihyena command line does.

One train step = forward, loss, backward, gradient clipping and an AdamW update, as in
``minihyena.train.Trainer.train_step``. The model is ``HyenaConfig()`` (d_model 128, 4 layers, order 2)
with ``l_max`` set to the sequence length. Each backend runs in its own process (BLAS, Numba and torch
thread pools then never compete), first ``--warmup`` steps untimed (Numba compiles or loads its
kernels there), then the median of ``--steps`` timed steps.

``--blas-threads`` sets OPENBLAS_NUM_THREADS/OMP_NUM_THREADS/MKL_NUM_THREADS for every worker (and
torch's intra-op threads). The default, 0, leaves the environment alone. On a 2-core machine shared
with other busy processes, multi-threaded BLAS spins for its partner thread and a step of either
backend was then several times slower; ``--blas-threads 1`` measures the kernels instead of that.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _workers import run_worker as run  # noqa: E402

DEFAULT_SIZES = "16x128,4x1024,1x8192"  # batch x sequence length; 16 x 128 is the trainer's default
# PyTorch, CPU: eager on --blas-threads threads, eager on its own default threads, and torch.compile
TORCH = ("torch", "torch-default", "torch.compile")


def _minihyena_step(backend: str, B: int, L: int):
    from minihyena.backends import configure_threads
    from minihyena.nn.model import HyenaConfig, HyenaLM
    from minihyena.nn.module import clear_grads
    from minihyena.optim import AdamW, clip_grad_norm, param_groups

    # as the command line does: numba's workers sleep, BLAS on one thread (unless set); numpy's FFT threads
    configure_threads(backend)
    model = HyenaLM(HyenaConfig(l_max=L)).to(backend)
    opt = AdamW(param_groups(model, 0.1), lr=1e-3)
    rng = np.random.default_rng(0)
    V = model.config.vocab_size
    x, y = (model.backend.asarray(rng.integers(0, V, (B, L))) for _ in range(2))

    params = model.parameters()  # held, as the Trainer holds them

    def step():
        loss = model.loss(x, y)
        clear_grads(params)  # model.zero_grad(), as in Trainer.train_step
        loss.backward()
        clip_grad_norm(params, 1.0)
        opt.step()
        loss.item()  # waits for a GPU backend

    return step, model.num_parameters()


def _torch_step(B: int, L: int, compiled: bool = False):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch
    from torch_hyena import TorchHyenaLM

    from minihyena.nn.model import HyenaConfig

    torch.manual_seed(0)
    cfg = HyenaConfig(l_max=L)
    model = TorchHyenaLM(cfg)
    if compiled:  # inductor's CPU code for the forward and backward; the warm-up steps compile it
        model = torch.compile(model)
    # fused: one kernel over all parameters, torch's fastest AdamW on a CPU (about 1.3-2.5 ms a step at the
    # default size against 4.2 for its per-parameter loop)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=0.1, fused=True)
    x, y = (torch.randint(0, cfg.vocab_size, (B, L)) for _ in range(2))
    params = list(model.parameters())

    def step():
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, cfg.vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        loss.item()

    return step, sum(p.numel() for p in model.parameters())


def worker(name: str, sizes, warmup: int, steps: int) -> None:
    """Runs in a child process: prints one JSON line per size."""
    from minihyena.backends import keep_freed_memory

    keep_freed_memory()  # every worker, torch's too, as the minihyena command line does
    threads = int(os.environ.get("MINIHYENA_BENCH_THREADS", "0"))
    if name in TORCH:
        import torch

        if threads and name != "torch-default":
            torch.set_num_threads(threads)
    for B, L in sizes:
        if name in TORCH:
            step, n_params = _torch_step(B, L, compiled=name == "torch.compile")
        else:
            step, n_params = _minihyena_step(name, B, L)
        t0 = time.perf_counter()
        for _ in range(warmup):
            step()
        warm = time.perf_counter() - t0
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        print(json.dumps({"backend": name, "B": B, "L": L, "median": float(np.median(times)), "min": min(times),
                          "warmup": warm, "params": n_params}), flush=True)


def run_worker(name: str, args, sizes: str | None = None) -> list[dict]:
    return run(__file__, name, ["--sizes", sizes or args.sizes, "--warmup", str(args.warmup), "--steps", str(args.steps)],
               threads=args.blas_threads)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"comma-separated BxL (default {DEFAULT_SIZES})")
    p.add_argument("--backends", default=None, help="comma-separated (default: every available one)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per size (median reported)")
    p.add_argument("--rounds", type=int, default=1, help="run every worker this many times, in turn; report the "
                   "median of the rounds' medians")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation, caches)")
    p.add_argument("--blas-threads", type=int, default=0, help="threads for BLAS and torch (0: leave as is)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch CPU model")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (about a minute to compile per size)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    if args.worker:
        worker(args.worker, sizes, args.warmup, args.steps)
        return 0

    from minihyena.backends import available_backends

    names = args.backends.split(",") if args.backends else available_backends()
    if not args.no_torch:
        try:
            import torch  # noqa: F401  (only to know it is there; the worker imports it)

            names += ["torch", "torch-default"] + (["torch.compile"] if args.compile else [])
        except ImportError:
            print("PyTorch is not installed: the torch CPU comparison is skipped (pip install torch)")
    print(f"train step = forward + backward + clip + AdamW; median of {args.steps} steps after {args.warmup} "
          f"warm-up steps; BLAS threads: {args.blas_threads or os.environ.get('OPENBLAS_NUM_THREADS', 'default')}")
    if "numba" in names and not args.blas_threads:
        print("note: the numba worker calls configure_threads('numba'): BLAS on one thread unless "
              "OMP/OPENBLAS/MKL_NUM_THREADS is set")
    rows = []  # with rounds, every worker runs each size in turn, so that a busy moment of the machine hits them all
    for i in range(args.rounds):
        for size in ([args.sizes] if args.rounds == 1 else [f"{B}x{L}" for B, L in sizes]):
            rows += [{**r, "round": i} for name in names for r in run_worker(name, args, size)]
    runs: dict = {}
    for r in rows:
        runs.setdefault((r["backend"], r["B"], r["L"]), []).append(r)
    median = {key: float(np.median([r["median"] for r in rs])) for key, rs in runs.items()}
    for B, L in sizes:  # PyTorch's fair best: the faster of its two eager settings
        eager = [median[t, B, L] for t in ("torch", "torch-default") if (t, B, L) in median]
        if eager:
            median["torch eager", B, L] = min(eager)
    print(f"\n{'backend':13s} {'B x L':>10s} {'params':>9s} {'step ms':>9s} {'tokens/s':>10s} {'vs numpy':>9s} "
          f"{'/ torch':>8s} {'warm-up s':>9s}")
    for B, L in sizes:
        for (name, b, l), rs in runs.items():
            if (b, l) != (B, L):
                continue
            m = median[name, B, L]
            speedup = f"{median['numpy', B, L] / m:.2f}x" if ("numpy", B, L) in median else "-"
            vs_torch = f"{m / median['torch eager', B, L]:.2f}" if ("torch eager", B, L) in median else "-"
            print(f"{name:13s} {f'{B} x {L}':>10s} {rs[0]['params']:9,d} {m * 1e3:9.1f} {B * L / m:10,.0f} "
                  f"{speedup:>9s} {vs_torch:>8s} {rs[0]['warmup']:9.1f}")
    if args.rounds > 1:
        print(f"(step ms: the median over {args.rounds} rounds of each round's median; / torch: against the faster "
              "torch eager setting)")
    if args.rounds > 1:  # each round's ratio from runs seconds apart: steadier than a ratio of medians on a busy machine
        lines = []
        for name in [n for n in names if n not in TORCH]:
            line = []
            for B, L in sizes:
                ratios = _paired_ratios(runs, name, B, L)
                if ratios:
                    line.append(f"{np.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) at {B}x{L}")
            if line:
                lines.append(f"  {name}: " + ", ".join(line))
        if lines:
            print("per round, each backend against that round's faster torch eager (median; range):", *lines, sep="\n")
    pairs = [(B, L) for B, L in sizes if ("numba", B, L) in median and ("torch eager", B, L) in median]
    if pairs:  # the target: a numba train step in at most 0.8 of torch eager's time
        print("backend_speed: numba/torch step time " + ", ".join(
            f"{median['numba', B, L] / median['torch eager', B, L]:.2f} at {B}x{L}" for B, L in pairs))
    return 0


def _paired_ratios(runs: dict, name: str, B: int, L: int) -> list[float]:
    """``name``'s step time over the faster torch eager setting's, round by round (rounds with both)."""
    by_round: dict = {}
    for backend in (name, "torch", "torch-default"):
        for r in runs.get((backend, B, L), []):
            by_round.setdefault(r["round"], {})[backend] = r["median"]
    return [t[name] / min(t[k] for k in ("torch", "torch-default") if k in t)
            for t in by_round.values() if name in t and ("torch" in t or "torch-default" in t)]


if __name__ == "__main__":
    sys.exit(main())
