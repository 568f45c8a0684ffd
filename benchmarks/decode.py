"""Decoding speed: cached (prefill once, then one position per token) against recomputing the context.

The default model architecture (HyenaConfig(): width 128, 4 blocks, order 2), l_max large enough for the
longest prompt, random weights (speed does not depend on them). For each prompt length the two paths
are timed token by token, interleaved, on the same continuation, and their logits compared. A second
run decodes from one token up to the longest prompt to show how the cached per-token time grows with t.

    python benchmarks/decode.py                                   # prompts 256, 1024, 4096, NumPy backend
    python benchmarks/decode.py --plot docs/assets/decode.png     # also draw per-token time against t

The last line is ``decode: cached/recompute speedup at 1024 = X.Xx, max rel logit diff = Y``; the exit
status is 1 if Y > 1e-4.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

TOLERANCE = 1e-4  # max |cached - recompute| / max |recompute| over every compared logit row


def rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, nargs="+", default=[256, 1024, 4096])
    p.add_argument("--new-tokens", type=int, default=64, help="cached tokens timed after each prompt")
    p.add_argument("--recompute-tokens", type=int, default=8, help="recomputed tokens timed after each prompt")
    p.add_argument("--backend", default="numpy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=None, help="write a PNG of per-token time against position")
    args = p.parse_args(argv)

    import minihyena as mh
    from minihyena.autograd import no_grad
    from minihyena.nn.model import HyenaConfig, HyenaLM

    l_max = max(args.prompts) + args.new_tokens
    cfg = HyenaConfig(l_max=l_max)
    model = HyenaLM(cfg, seed=args.seed).to(args.backend).eval()
    backend = mh.get_backend(args.backend)
    seq = np.random.default_rng(args.seed).integers(0, cfg.vocab_size, (1, l_max))  # (1, l_max) token ids
    print(f"model: d_model {cfg.d_model}, {cfg.n_layer} blocks, order {cfg.order}, {model.num_parameters():,} parameters, "
          f"l_max {l_max}, {np.dtype(cfg.dtype).name}, backend {backend.name}")

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out.numpy()[0].reshape(-1)

    rows, worst = [], 0.0
    with no_grad():
        model(seq[:, :64])  # warm-up (a Numba backend compiles here)
        for P in args.prompts:
            state = model.init_state(1)
            prefill_s, logits = timed(lambda: model.prefill(seq[:, :P], state))
            _, ref = timed(lambda: model(seq[:, :P], last_only=True))
            worst = max(worst, rel(logits, ref))
            cached, recompute = [], []
            for i in range(args.new_tokens):
                t = P + i  # the position this token lands on
                dt, logits = timed(lambda: model.step(seq[:, t], state))
                cached.append(dt)
                if i < args.recompute_tokens:  # the same token by a full re-run, right after
                    dt, ref = timed(lambda: model(seq[:, : t + 1], last_only=True))
                    recompute.append(dt)
                    worst = max(worst, rel(logits, ref))
            c, r = statistics.median(cached), statistics.median(recompute)
            rows.append((P, prefill_s, c, r))
            print(f"prompt {P:5d}: prefill {prefill_s * 1e3:7.1f} ms | per token: cached {c * 1e3:6.2f} ms "
                  f"({1 / c:7.1f} tok/s), recompute {r * 1e3:7.1f} ms ({1 / r:6.1f} tok/s) | speedup {r / c:5.1f}x", flush=True)

        # cached per-token time against position: decode from one token to the longest prompt
        T = max(args.prompts)
        state = model.init_state(1)
        model.prefill(seq[:, :1], state)
        per_token = np.array([timed(lambda: model.step(seq[:, t], state))[0] for t in range(1, T)])
    positions = np.arange(1, T)
    bucket = 256
    medians = [(int(positions[i:i + bucket].mean()), float(np.median(per_token[i:i + bucket])))
               for i in range(0, T - 1, bucket)]
    slope, intercept = np.polyfit([m[0] for m in medians], [m[1] for m in medians], 1)
    print(f"cached per-token time against position t (medians of {bucket}-token buckets): "
          f"{medians[0][1] * 1e3:.2f} ms at t ~ {medians[0][0]}, {medians[-1][1] * 1e3:.2f} ms at t ~ {medians[-1][0]}; "
          f"slope {slope * 1e9:.1f} us per 1000 positions on an intercept of {intercept * 1e3:.2f} ms")

    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        ax.plot([m[0] for m in medians], [m[1] * 1e3 for m in medians], "o-", label="cached: prefill once, then one position")
        ax.plot([r[0] for r in rows], [r[3] * 1e3 for r in rows], "s--", label="recompute the context for every token")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("position t of the new token")
        ax.set_ylabel("time per token (ms)")
        ax.set_title(f"Decoding, default model ({backend.name} backend)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"plot written to {args.plot}")

    at = {r[0]: r for r in rows}
    P = 1024 if 1024 in at else rows[len(rows) // 2][0]
    print(f"decode: cached/recompute speedup at {P} = {at[P][3] / at[P][2]:.1f}x, max rel logit diff = {worst:.2g}")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
