"""Forward + backward time and peak memory of one mixer layer, Hyena against attention, as L grows.

Each (mixer, L) runs in its own process (clean memory high-water mark; a process the system kills
for memory is reported, not fatal). Attention is not started where its analytic memory would
exceed the machine's RAM, and it is stopped from the first length that fails or runs out of time.
Peak memory is what NumPy allocated (tracemalloc), above the inputs.

    python benchmarks/scaling.py                      # width 256, batch 1, L = 256 .. 131072
    python benchmarks/scaling.py --max-len 16384 --backend numba --plot docs/assets/scaling.png
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def run_one(mixer: str, L: int, D: int, backend: str, repeats: int) -> dict:
    """Build one layer, time forward + backward ``repeats`` times (median), measure peak memory."""
    import tracemalloc

    import minihyena as mh
    from minihyena.nn.attention import CausalSelfAttention
    from minihyena.nn.hyena import HyenaOperator

    be = mh.get_backend(backend)
    layer = (
        HyenaOperator(D, L, order=2, rng=0) if mixer == "hyena" else CausalSelfAttention(D, L, n_head=4, rng=0)
    ).to(be)
    u = mh.Tensor(np.random.default_rng(0).standard_normal((1, L, D)).astype(np.float32), requires_grad=True, backend=be)
    g = be.asarray(np.ones((1, L, D), dtype=np.float32))
    layer(u).backward(g)  # warm-up, untraced: FFT plans, kernel compilation or cache loading
    times, peak = [], 0
    for _ in range(repeats):
        layer.zero_grad()
        u.grad = None
        tracemalloc.start()
        t0 = time.perf_counter()
        layer(u).backward(g)
        times.append(time.perf_counter() - t0)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return {"mixer": mixer, "L": L, "seconds": statistics.median(times), "peak_bytes": peak, "status": "ok"}


def measure(mixer: str, L: int, args) -> dict:
    cmd = [sys.executable, __file__, "--one", mixer, str(L), "--width", str(args.width), "--backend", args.backend]
    cmd += ["--repeats", str(1 if L >= 16384 else args.repeats)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"mixer": mixer, "L": L, "status": f"over the {args.timeout:.0f} s limit"}
    if proc.returncode != 0:
        killed = proc.returncode < 0 or "MemoryError" in proc.stderr
        reason = "out of memory" if killed else (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return {"mixer": mixer, "L": L, "status": reason}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--one", nargs=2, metavar=("MIXER", "L"), help=argparse.SUPPRESS)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--min-len", type=int, default=256)
    p.add_argument("--max-len", type=int, default=131072)
    p.add_argument("--backend", default="numpy")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement")
    p.add_argument("--plot", default=None, help="write a log-log plot (PNG) here (needs matplotlib)")
    p.add_argument("--json", default=None, help="write the measurements here")
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.width, args.backend, args.repeats)))
        return 0

    from minihyena.flops import attention_flops, attention_memory_bytes, fmt_bytes, fmt_flops, hyena_flops

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    lengths = [L for L in (2**i for i in range(8, 18)) if args.min_len <= L <= args.max_len]
    rows, attention_stopped = [], None
    print(f"one mixer layer, width {args.width}, batch 1, forward + backward, backend {args.backend}; RAM {fmt_bytes(ram)}")
    for L in lengths:
        h = measure("hyena", L, args)
        need = attention_memory_bytes(L, args.width) * 2.5  # kept probabilities + the transients of one head
        if attention_stopped:
            a = {"mixer": "attention", "L": L, "status": f"stopped ({attention_stopped} at a shorter L)"}
        elif need > 0.8 * ram:
            a = {"mixer": "attention", "L": L, "status": f"not run: needs about {fmt_bytes(need)}, over the RAM"}
            attention_stopped = "out of memory"
        else:
            a = measure("attention", L, args)
            if a["status"] != "ok":
                attention_stopped = a["status"]
        rows.append((L, h, a))
        hs = f"{h['seconds']:.3f} s, {fmt_bytes(h['peak_bytes'])}" if h["status"] == "ok" else h["status"]
        at = f"{a['seconds']:.3f} s, {fmt_bytes(a['peak_bytes'])}" if a["status"] == "ok" else a["status"]
        print(f"  L = {L:6d}: hyena {hs} | attention {at}", flush=True)

    print()
    print("| L | Hyena time (s) | Hyena peak mem | attention time (s) | attention peak mem | attention / Hyena time "
          "| Hyena fwd FLOPs | attention fwd FLOPs |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for L, h, a in rows:
        cells = []
        for m in (h, a):
            ok = m["status"] == "ok"
            cells += [f"{m['seconds']:.3f}", fmt_bytes(m["peak_bytes"])] if ok else [m["status"], "-"]
        both = h["status"] == "ok" and a["status"] == "ok"
        ratio = f"{a['seconds'] / h['seconds']:.1f}x" if both else "-"
        cells += [ratio, fmt_flops(hyena_flops(L, args.width)), fmt_flops(attention_flops(L, args.width))]
        print(f"| {L} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"L": L, "hyena": h, "attention": a} for L, h, a in rows], f, indent=1)
    if args.plot:
        plot(rows, args)
    return 0


def plot(rows, args) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot written")
        return
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for mixer, idx, style in (("hyena", 1, "o-"), ("attention", 2, "s--")):
        pts = [(row[0], row[idx]) for row in rows if row[idx]["status"] == "ok"]
        if pts:
            ax_t.loglog([L for L, _ in pts], [m["seconds"] for _, m in pts], style, label=mixer)
            ax_m.loglog([L for L, _ in pts], [m["peak_bytes"] / 2**20 for _, m in pts], style, label=mixer)
    ax_t.set(xlabel="sequence length L", ylabel="forward + backward (s)", title="time")
    ax_m.set(xlabel="sequence length L", ylabel="peak memory (MiB)", title="memory")
    for ax in (ax_t, ax_m):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"one mixer layer, width {args.width}, batch 1, backend {args.backend}")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"plot written to {args.plot}")


if __name__ == "__main__":
    sys.exit(main())
