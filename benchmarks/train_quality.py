"""Train-step speed and the validation loss reached within a wall-clock budget.

For each budget (minutes) the script measures the step time of the configuration, sizes the cosine
schedule to end when the budget does, trains on the bundled corpus until the budget is spent (on a
busy machine that is before the schedule ends: the table says how many steps ran), and reports the
character-level validation loss (nats) on 20 fixed validation batches. Speed is the median over steps.

    python benchmarks/train_quality.py                    # budgets of 5 and 10 minutes
    python benchmarks/train_quality.py --budgets 1 --backend numba
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time

import numpy as np

from minihyena.nn.model import HyenaConfig
from minihyena.train import TrainConfig, Trainer


def median_step_seconds(trainer: Trainer, steps: int) -> float:
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:] if len(times) > 2 else times)


def run_budget(minutes: float, cfg: TrainConfig, model_cfg: HyenaConfig) -> dict:
    """Train for at most ``minutes`` of wall-clock time (setup and the final evaluation excluded)."""
    with tempfile.TemporaryDirectory() as out:
        probe = Trainer(dataclasses.replace(cfg, out=out), model_cfg, log=lambda *a: None)
        probe_s = median_step_seconds(probe, 12)
        # size the cosine schedule to end with the budget; stop at the budget even if steps remain
        steps = max(10, int(minutes * 60 / probe_s))
        trainer = Trainer(dataclasses.replace(cfg, out=out, max_iters=steps), model_cfg, log=lambda *a: None)
        times, losses = [], []
        t0 = time.perf_counter()
        while trainer.step < steps and time.perf_counter() - t0 < minutes * 60:
            t = time.perf_counter()
            losses.append(trainer.train_step())
            times.append(time.perf_counter() - t)
        wall = time.perf_counter() - t0
        val = trainer.evaluate()
    tokens = cfg.batch_size * cfg.seq_len
    return {
        "budget_min": minutes,
        "steps": f"{trainer.step}/{steps}",
        "wall_min": wall / 60,
        "median_tok_s": tokens / statistics.median(times),
        "val_loss": val,
        "train_loss": float(np.mean(losses[-20:])),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budgets", type=float, nargs="+", default=[5.0, 10.0], help="minutes per run")
    p.add_argument("--backend", default="numpy")
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--seq-len", type=int, default=TrainConfig.seq_len)
    p.add_argument("--d-model", type=int, default=HyenaConfig.d_model)
    p.add_argument("--n-layer", type=int, default=HyenaConfig.n_layer)
    args = p.parse_args(argv)
    cfg = TrainConfig(backend=args.backend, batch_size=args.batch_size, seq_len=args.seq_len)
    model_cfg = HyenaConfig(d_model=args.d_model, n_layer=args.n_layer)
    print(f"backend {args.backend}; model {model_cfg}; batch {cfg.batch_size} x {cfg.seq_len}; lr {cfg.lr}", flush=True)
    rows = []
    for minutes in args.budgets:
        row = run_budget(minutes, cfg, model_cfg)
        rows.append(row)
        print(f"  {minutes:g} min: {row['steps']} steps, val loss {row['val_loss']:.4f}", flush=True)
    print()
    print("| budget (min) | wall (min) | steps | median train tokens/s | train loss | val loss (nats/char) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['budget_min']:g} | {r['wall_min']:.1f} | {r['steps']} | {r['median_tok_s']:,.0f} | "
            f"{r['train_loss']:.3f} | {r['val_loss']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
