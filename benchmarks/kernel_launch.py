"""What one parallel Numba kernel costs on each threading layer: the wake-up of the workers.

    python benchmarks/kernel_launch.py

Each layer runs in its own process (a process keeps the first layer it starts), chosen as
``configure_threads("numba")`` chooses it: TBB where the ``tbb`` package loads, OpenMP with
``OMP_WAIT_POLICY=passive``. The kernel adds two float32 arrays with ``prange``; a one-thread loop
gives the time of the work itself. Medians of 2,000 calls, back to back.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

SIZES = (1024, 65536, 262144, 1 << 20)

WORKER = r"""
import json, os, sys, time
import numpy as np
from minihyena.backends.threads import load_tbb
why = load_tbb()  # as configure_threads does: the tbb wheel's library, preloaded
if os.environ["NUMBA_THREADING_LAYER"] == "tbb" and why is not None:
    print(json.dumps({"skip": why})); sys.exit()
import numba
from numba import njit, prange

@njit(parallel=True)
def add_parallel(a, b, y):
    for i in prange(a.shape[0]):
        y[i] = a[i] + b[i]

@njit
def add_serial(a, b, y):
    for i in range(a.shape[0]):
        y[i] = a[i] + b[i]

def median_us(f, *args, n=2000):
    for _ in range(50):
        f(*args)
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f(*args)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e6

out = {}
for size in json.loads(sys.argv[1]):
    a = np.random.default_rng(0).random(size, dtype=np.float32)
    y = np.empty_like(a)
    out[size] = (median_us(add_parallel, a, a, y), median_us(add_serial, a, a, y))
print(json.dumps({"layer": numba.threading_layer(), "threads": numba.get_num_threads(), "times": out}))
"""


def main() -> None:
    results = {}
    for layer in ("tbb", "omp"):
        env = dict(os.environ, NUMBA_THREADING_LAYER=layer, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "passive"))
        proc = subprocess.run([sys.executable, "-c", WORKER, json.dumps(SIZES)], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{layer}: failed: {proc.stderr.strip().splitlines()[-1]}")
            continue
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        if "skip" in got:
            print(f"{layer}: not available ({got['skip']})")
            continue
        results[layer] = got
    print(f"{'numbers':>10}" + "".join(f"{layer + ' (%d threads)' % r['threads']:>20}" for layer, r in results.items())
          + f"{'one thread':>14}   (us per call, medians)")
    for size in SIZES:
        row = [r["times"][str(size)] for r in results.values()]
        serial = row[0][1] if row else float("nan")
        print(f"{size:>10,}" + "".join(f"{par:>20.1f}" for par, _ in row) + f"{serial:>14.1f}")


if __name__ == "__main__":
    main()
