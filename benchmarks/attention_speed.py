"""Causal attention, forward + backward: minihyena's tiled op against PyTorch's scaled_dot_product_attention.

    python benchmarks/attention_speed.py                        # L = 1024, 4096, 8192; batch 1, 4 heads of 64
    python benchmarks/attention_speed.py --lengths 1024 --repeats 3 --no-torch

Each side runs in its own process (thread pools never compete), with the same number of threads
(``--threads``, default: the machine's cores; BLAS and torch's intra-op pool). One measurement is
``out = attention(q, k, v); out.backward(g)`` on float32 inputs, timed ``--repeats`` times after one
untimed warm-up. Every side runs once per round, in turn, for ``--rounds`` rounds; the figure is the
median over rounds of each round's median (on a shared machine a busy minute then hits both sides). Peak memory: the largest traced allocation during one forward + backward
(tracemalloc, which sees NumPy's arrays) for minihyena; for torch, the growth of the process's peak
resident set (torch's allocator is invisible to tracemalloc). A full L x L score matrix per head
would be 4 H L^2 bytes: 1 GiB at L = 8192 and 4 heads.

The last line is ``attention: minihyena/torch fwd+bwd at 4096 = X.XXx, peak MiB at 8192 = Y``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _workers import run_worker as run  # noqa: E402


def _inputs(L: int, H: int, d: int):
    rng = np.random.default_rng(0)
    return [rng.standard_normal((1, H, L, d)).astype(np.float32) for _ in range(4)]  # q, k, v, upstream g


def _minihyena(backend: str, L: int, H: int, d: int):
    from minihyena import Tensor, functional as F
    from minihyena.backends import get_backend

    be = get_backend(backend)
    q, k, v, g = _inputs(L, H, d)

    def run():
        args = [Tensor(a, backend=be, requires_grad=True) for a in (q, k, v)]
        F.causal_attention(*args).backward(be.asarray(g))

    return run


def _torch(L: int, H: int, d: int):
    import torch

    q, k, v, g = (torch.from_numpy(a) for a in _inputs(L, H, d))

    def run():
        args = [a.clone().requires_grad_() for a in (q, k, v)]
        torch.nn.functional.scaled_dot_product_attention(*args, is_causal=True).backward(g)

    return run


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(name: str, lengths, H: int, d: int, repeats: int) -> None:
    """Runs in a child process: one JSON line per length."""
    threads = int(os.environ.get("MINIHYENA_BENCH_THREADS", "0"))
    if name == "torch":
        import torch

        if threads:
            torch.set_num_threads(threads)
    for L in lengths:
        run = _torch(L, H, d) if name == "torch" else _minihyena(name, L, H, d)
        rss0 = _rss_mib()
        run()  # warm-up
        rss = _rss_mib() - rss0
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        peak = None
        if name != "torch":
            tracemalloc.start()
            run()
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        print(json.dumps({"name": name, "L": L, "median": float(np.median(times)), "peak_mib": peak,
                          "rss_growth_mib": rss}), flush=True)


def run_worker(name: str, args) -> list[dict]:
    return run(__file__, name, ["--lengths", args.lengths, "--heads", str(args.heads), "--head-dim", str(args.head_dim),
                                "--repeats", str(args.repeats)], threads=args.threads)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="1024,4096,8192")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per length and round (median)")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds of every side in turn, so that a noisy minute hits both; the median of the rounds")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="BLAS / torch threads (0: leave as is)")
    p.add_argument("--backends", default="numpy,numba", help="minihyena backends to time")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    lengths = [int(x) for x in args.lengths.split(",")]
    if args.worker:
        worker(args.worker, lengths, args.heads, args.head_dim, args.repeats)
        return 0

    from minihyena.backends import available_backends

    names = [b for b in args.backends.split(",") if b in available_backends()]
    if not args.no_torch:
        try:
            import torch

            names.append("torch")
            print(f"torch {torch.__version__}: scaled_dot_product_attention(is_causal=True) on the CPU")
        except ImportError:
            print("PyTorch is not installed: the torch comparison is skipped (pip install torch)")
    print(f"causal attention forward + backward, batch 1, {args.heads} heads of {args.head_dim}, float32; "
          f"median of {args.rounds} rounds of {args.repeats}; threads: {args.threads or 'default'}")
    rounds = [[r for name in names for r in run_worker(name, args)] for _ in range(args.rounds)]
    by = {}
    for r in (r for rows in rounds for r in rows):  # the median over rounds of each round's median
        by.setdefault((r["name"], r["L"]), []).append(r)
    by = {key: {**rs[0], "median": float(np.median([r["median"] for r in rs]))} for key, rs in by.items()}
    print(f"\n{'L':>6s} {'side':8s} {'fwd+bwd ms':>11s} {'/ torch':>8s} {'peak MiB':>9s} {'RSS growth MiB':>15s} "
          f"{'L x L per head, MiB':>20s}")
    for L in lengths:
        square = 4 * args.heads * L * L / 2**20
        for name in names:
            r = by.get((name, L))
            if r is None:
                continue
            ratio = f"{r['median'] / by['torch', L]['median']:.2f}" if ("torch", L) in by else "-"
            peak = f"{r['peak_mib']:.1f}" if r["peak_mib"] is not None else "-"
            print(f"{L:6d} {name:8s} {r['median'] * 1e3:11.1f} {ratio:>8s} {peak:>9s} {r['rss_growth_mib']:15.1f} "
                  f"{square:20.0f}")
    mine = [n for n in names if n != "torch"]
    if not mine:
        return 1
    at = 4096 if 4096 in lengths else lengths[len(lengths) // 2]
    big = max(lengths)
    best = min(mine, key=lambda n: by[n, at]["median"] if (n, at) in by else float("inf"))
    ratio = f"{by[best, at]['median'] / by['torch', at]['median']:.2f}x" if ("torch", at) in by else "n/a"
    print(f"(best minihyena backend at {at}: {best})")
    print(f"attention: minihyena/torch fwd+bwd at {at} = {ratio}, peak MiB at {big} = {by[best, big]['peak_mib']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
