r"""Data-parallel training speed: tokens/s on 1 and 2 processes, the allreduce cost, and an estimate for more.

    python benchmarks/data_parallel.py                        # HyenaConfig() at batch 16 x 128 per process
    python benchmarks/data_parallel.py --steps 20 --rounds 5 --configs 1x1,2x1,1x2,2x2

Each configuration ``PxT`` (P processes with T BLAS threads each) runs ``mpiexec -n P`` on this script
in worker mode: a :class:`~minihyena.train.Trainer` on the bundled corpus, ``--warmup`` untimed steps,
then ``--steps`` timed ones. The configurations take turns for ``--rounds`` rounds, so the load of a
busy machine falls on all of them alike; every figure is a median. Rank 0 records the step time and
the time spent in the step's collectives (the loss average and the gradient allreduce, waits for the
slower rank included). After training, the ranks time the gradient allreduce and a one-number allreduce
on their own (synchronised, no compute around them): the bandwidth and latency of this machine's MPI.

The scaling efficiency is tokens/s on P processes over P x tokens/s on one process with the same
threads per process (weak scaling: each process keeps its ``--batch-size``). The estimate for 8 and 64
processes assumes each process computes as fast as the one-process run and no compute overlaps the
communication; the gradient allreduce costs $2(P-1)\alpha + 2\frac{P-1}{P} n / B$ (ring) and each scalar
allreduce $2\lceil\log_2 P\rceil \alpha$, with latency $\alpha$ and bandwidth $B$ either measured
here (processes on one large shared-memory host) or assumed for a network (``--net-latency-us``,
``--net-gbs``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)


def worker(args) -> None:
    import numpy as np

    from minihyena.distributed import world
    from minihyena.nn.model import HyenaConfig
    from minihyena.train import TrainConfig, Trainer

    comm = world()
    spent = {"collectives": 0.0}

    def timed(fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent["collectives"] += time.perf_counter() - t
        return wrapper

    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(out=out, max_iters=10**6, seq_len=args.seq_len, batch_size=args.batch_size,
                          warmup_iters=10, seed=0, backend=args.backend)
        model_cfg = HyenaConfig(d_model=args.d_model, n_layer=args.n_layer, l_max=args.seq_len)
        trainer = Trainer(cfg, model_cfg, log=lambda *a: None, comm=comm)
        for _ in range(args.warmup):
            trainer.train_step()
        comm.mean, comm.average_gradients = timed(comm.mean), timed(comm.average_gradients)
        steps, collectives = [], []
        for _ in range(args.steps):
            comm.any(False)  # start together; not timed
            spent["collectives"] = 0.0
            t = time.perf_counter()
            trainer.train_step()
            steps.append(time.perf_counter() - t)
            collectives.append(spent["collectives"])
        params = [p for p in trainer.model.parameters() if p.grad is not None]
        grad_ar, scalar_ar = [], []
        for _ in range(args.reps):  # the allreduces alone
            comm.any(False)
            t = time.perf_counter()
            comm.average_gradients(params)
            grad_ar.append(time.perf_counter() - t)
            comm.any(False)
            t = time.perf_counter()
            comm.sum(1.0)
            scalar_ar.append(time.perf_counter() - t)
    if comm.rank == 0:
        print(json.dumps({
            "P": comm.size, "step_s": statistics.median(steps), "collectives_s": statistics.median(collectives),
            "grad_allreduce_s": statistics.median(grad_ar), "scalar_allreduce_s": statistics.median(scalar_ar),
            "grad_bytes": int(sum(p.grad.nbytes for p in params)), "params": trainer.model.num_parameters(),
            "tokens_per_step": comm.size * args.batch_size * args.seq_len, "backend": trainer.backend.name,
            "numpy": np.__version__,
        }))


def launch(P: int, threads: int, args) -> dict:
    """Rank 0's figures from ``mpiexec -n P`` in worker mode; ``threads`` 0 leaves the choice to the trainer."""
    thread_vars = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in thread_vars}
    if threads:
        env.update({var: str(threads) for var in thread_vars})
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    mpiexec = mpiexec if os.path.exists(mpiexec) else "mpiexec"
    cmd = [mpiexec, "-n", str(P), sys.executable, HERE, "--worker", *sys.argv[1:]]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed (status {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ring_seconds(P: int, alpha: float, bandwidth: float, nbytes: int) -> float:
    """Gradient allreduce (ring) plus the step's two scalar allreduces (recursive doubling)."""
    grad = 2 * (P - 1) * alpha + 2 * (P - 1) / P * nbytes / bandwidth
    return grad + 2 * 2 * math.ceil(math.log2(P)) * alpha


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", default="1x1,2x1,1x2", help="PxT: P processes with T threads each (T = 0: "
                   "the thread variables unset, as a user runs it)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=10, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=30, help="repetitions of the allreduce-only timing")
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=16, help="windows per process")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--backend", default="numpy")
    p.add_argument("--net-latency-us", type=float, default=30.0, help="assumed network latency (10 GbE: ~30)")
    p.add_argument("--net-gbs", type=float, default=1.1, help="assumed network bandwidth, GB/s (10 GbE: ~1.1)")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    configs = [tuple(int(v) for v in c.lower().split("x")) for c in args.configs.split(",")]
    runs: dict[tuple, list[dict]] = {c: [] for c in configs}
    print(f"{len(configs)} configurations x {args.rounds} rounds, {args.steps} timed steps each; "
          f"{os.cpu_count()} CPUs here", flush=True)
    for r in range(args.rounds):
        for c in configs:
            runs[c].append(launch(*c, args))
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    def med(c, key):
        return statistics.median(run[key] for run in runs[c])

    first = runs[configs[0]][0]
    print(f"\nmodel: {first['params']:,} parameters ({first['grad_bytes'] / 1e6:.2f} MB of gradients), backend "
          f"{first['backend']}, batch {args.batch_size} x {args.seq_len} per process\n")
    print("| processes x threads | step (ms) | tokens/s | collectives in a step (ms) | share of the step |")
    print("|---|---|---|---|---|")
    rate = {}
    for c in configs:
        step, coll = med(c, "step_s"), med(c, "collectives_s")
        rate[c] = c[0] * args.batch_size * args.seq_len / step
        print(f"| {c[0]} x {c[1]} | {step * 1e3:.1f} | {rate[c]:,.0f} | {coll * 1e3:.2f} | {coll / step:.1%} |")

    multi = [c for c in configs if c[0] > 1]
    for c in multi:
        base = (1, c[1])
        if base in rate:
            print(f"\nscaling efficiency of {c[0]} x {c[1]} (tokens/s over {c[0]} x those of 1 x {c[1]}): "
                  f"{rate[c] / (c[0] * rate[base]):.1%}")
        for other in configs:
            if other[0] == 1 and other[0] * other[1] == c[0] * c[1] and other != c:
                print(f"tokens/s of {c[0]} x {c[1]} over {other[0]} x {other[1]} (same cores): {rate[c] / rate[other]:.2f}x")
    if not multi:
        return
    c = multi[0]
    nbytes = first["grad_bytes"]
    scalar, grad = med(c, "scalar_allreduce_s"), med(c, "grad_allreduce_s")
    P = c[0]
    alpha = scalar / (2 * math.ceil(math.log2(P)))
    bandwidth = 2 * (P - 1) / P * nbytes / max(grad - 2 * (P - 1) * alpha, 1e-9)
    print(f"\nallreduce alone on {P} processes: gradients {grad * 1e3:.3f} ms, one number {scalar * 1e6:.1f} us "
          f"-> latency ~{alpha * 1e6:.1f} us, bandwidth ~{bandwidth / 1e9:.2f} GB/s")
    base = (1, c[1]) if (1, c[1]) in rate else configs[0]
    compute = med(base, "step_s")
    print(f"\npaper estimate (compute {compute * 1e3:.1f} ms per step and process, from {base[0]} x {base[1]}; "
          f"no overlap of compute and communication):\n")
    print("| processes | interconnect | allreduce per step (ms) | efficiency | tokens/s |")
    print("|---|---|---|---|---|")
    nets = [("as measured here", alpha, bandwidth),
            (f"network {args.net_latency_us:g} us, {args.net_gbs:g} GB/s", args.net_latency_us * 1e-6, args.net_gbs * 1e9)]
    for n in (8, 64):
        for name, a, b in nets:
            t = ring_seconds(n, a, b, nbytes)
            tokens = n * args.batch_size * args.seq_len / (compute + t)
            print(f"| {n} | {name} | {t * 1e3:.2f} | {compute / (compute + t):.1%} | {tokens:,.0f} |")


if __name__ == "__main__":
    main()
