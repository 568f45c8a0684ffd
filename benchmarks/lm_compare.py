"""Hyena against a Transformer (GPT with rotary attention) on text: equal size, data, tokens per step and CPU time.

    python benchmarks/lm_compare.py --write-docs          # the full comparison (about 70 CPU minutes)
    python benchmarks/lm_compare.py --quick --out /tmp/q  # the same pipeline in under a minute (CI)

Setup (every choice is in the JSON it writes):

* models: width 128, 4 layers, MLP ratio 4, tied head; Hyena of order 2 with a filter network of width 32,
  the GPT with 4 rotary heads of 32; parameters within 5% (checked);
* data: the bundled Shakespeare corpus, characters; the last 10% held out. Validation: the same fixed
  held-out windows for both models at each context length (16,384 tokens per evaluation);
* contexts 256, 1024, 4096 with 8,192 tokens per step (batch 32, 8, 2);
* budget: ``--budget`` CPU seconds of training per run (default 300; evaluation not counted), one BLAS
  thread per run, ``--jobs`` runs side by side; the fastest CPU backend (numba where installed);
* learning rate: one symmetric sweep, the same three values for both models ({1e-3, 3e-3, 1e-2}), at
  context 1024, seed 0, a third of the budget; the rule: each model takes the value with the lowest final
  validation loss, at every context. Schedule: 20 warm-up steps, then cosine to lr/10 over the steps the
  budget allows (estimated from the first steps);
* two seeds per model and context (initialisation and batches).

Printed for each context: validation loss at equal time (the end of the budget) and at equal tokens
(the most both reached), and the FLOPs and seconds each model needs to reach the GPT's final validation
loss (linear interpolation between evaluations; "not reached" if it never does).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FULL = dict(contexts=[256, 1024, 4096], tokens_per_step=8192, seeds=[1, 2], budget=300.0, lrs=[1e-3, 3e-3, 1e-2],
            sweep_context=1024, d_model=128, n_layer=4, mlp_ratio=4, filter_order=32, n_head=4, eval_tokens=16384,
            evals=12, warmup=20)
QUICK = dict(FULL, contexts=[64, 128], tokens_per_step=256, seeds=[1], budget=3.0, lrs=[3e-3, 1e-2], sweep_context=64,
             d_model=48, n_layer=1, filter_order=8, n_head=2, eval_tokens=1024, evals=3, warmup=2)
MODELS = {"hyena": "hyena", "gpt": "attention-rope"}


def model_config(setup: dict, name: str, context: int, vocab: int):
    from minihyena.nn.model import HyenaConfig

    return HyenaConfig(vocab_size=vocab, d_model=setup["d_model"], n_layer=setup["n_layer"], l_max=context,
                       mlp_ratio=setup["mlp_ratio"], filter_order=setup["filter_order"], n_head=setup["n_head"],
                       mixer=MODELS[name])


# ---------------------------------------------------------------- one run (a child process)
def train_run(job: dict) -> dict:
    """Train one model for ``job["budget"]`` CPU seconds; return its evaluations."""
    from minihyena.autograd import no_grad
    from minihyena.backends import configure_threads, get_backend
    from minihyena.data.text import CharTokenizer, TextDataset, load_bundled_corpus
    from minihyena.flops import train_step_flops
    from minihyena.nn.model import HyenaLM
    from minihyena.optim import AdamW, clip_grad_norm, cosine_lr, param_groups

    setup, ctx = job["setup"], job["context"]
    be = get_backend(job["backend"])
    configure_threads(be)
    text = load_bundled_corpus()
    tok = CharTokenizer.from_text(text)
    data = TextDataset(tok.encode(text), val_fraction=0.1)
    cfg = model_config(setup, job["model"], ctx, tok.vocab_size)
    model = HyenaLM(cfg, seed=job["seed"]).to(be)
    opt = AdamW(param_groups(model, 0.1), lr=job["lr"], betas=(0.9, 0.98))
    batch = setup["tokens_per_step"] // ctx
    rng = np.random.default_rng(job["seed"])
    val_rng = np.random.default_rng(12345)  # the same held-out windows for every model and seed
    val = [data.get_batch("val", 1, ctx, val_rng) for _ in range(max(1, setup["eval_tokens"] // ctx))]
    step_flops = train_step_flops(cfg, batch, ctx)

    def evaluate() -> float:
        model.eval()
        with no_grad():
            loss = float(np.mean([model.loss(be.asarray(x), be.asarray(y)).item() for x, y in val]))
        model.train()
        return loss

    def step(i: int, total: int) -> float:
        opt.lr = cosine_lr(i, job["lr"], setup["warmup"], total, job["lr"] / 10)
        x, y = data.get_batch("train", batch, ctx, rng)
        loss = model.loss(be.asarray(x), be.asarray(y))
        model.zero_grad()
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    x, y = data.get_batch("val", batch, ctx, np.random.default_rng(0))  # compile kernels, untimed, no update
    model.loss(be.asarray(x), be.asarray(y)).backward()
    model.zero_grad()
    budget, cpu, i, total = job["budget"], 0.0, 0, 10**9
    curve = [{"step": 0, "tokens": 0, "cpu_s": 0.0, "flops": 0.0, "val_loss": evaluate()}]
    marks = list(np.linspace(budget / setup["evals"], budget, setup["evals"]))
    while cpu < budget and i < total:
        t = time.process_time()
        loss = step(i, total)
        cpu += time.process_time() - t
        i += 1
        if not np.isfinite(loss):
            return {**job, "diverged_at": i, "curve": curve}
        if i == 3:  # the schedule spans the steps the budget allows
            total = max(i + 1, int(budget / (cpu / i)))
        if cpu >= marks[0] or cpu >= budget or i == total:
            while marks and cpu >= marks[0]:
                marks.pop(0)
            curve.append({"step": i, "tokens": i * batch * ctx, "cpu_s": cpu, "flops": i * step_flops,
                          "val_loss": evaluate(), "train_loss": loss})
    return {**job, "steps": i, "params": model.num_parameters(), "step_flops": step_flops, "curve": curve}


def run_jobs(jobs: list[dict], parallel: int) -> list[dict]:
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = "1"

    def one(job):
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], env=env, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"run {job['model']} ctx {job['context']} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  {job['model']:5s} ctx {job['context']:5d} lr {job['lr']:.0e} seed {job['seed']}: "
              f"{result.get('steps', '?')} steps, val loss {result['curve'][-1]['val_loss']:.4f}", flush=True)
        return result

    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(one, jobs))


# ---------------------------------------------------------------- summaries
def reach(curve: list[dict], target: float, key: str) -> float | None:
    """``key`` (flops, cpu_s, tokens) at which the validation loss first reaches ``target`` (interpolated)."""
    for a, b in zip(curve, curve[1:]):
        if b["val_loss"] <= target:
            if a["val_loss"] <= target:
                return a[key]
            w = (a["val_loss"] - target) / (a["val_loss"] - b["val_loss"])
            return a[key] + w * (b[key] - a[key])
    return None


def at(curve: list[dict], key: str, x: float) -> float:
    """Validation loss at ``key`` = x, interpolated between evaluations."""
    xs, ys = [c[key] for c in curve], [c["val_loss"] for c in curve]
    return float(np.interp(x, xs, ys))


def summarize(runs: list[dict], setup: dict) -> list[dict]:
    """Per context: mean losses at equal time and tokens, and what each model spends to reach the GPT's final
    loss. Seeds are paired: Hyena seed s is held against the final loss of GPT seed s, which that GPT run
    reaches by its end; the FLOPs ratio is the mean of the per-seed ratios."""
    rows = []
    for ctx in setup["contexts"]:
        mine = {m: sorted((r for r in runs if r["context"] == ctx and r["model"] == m), key=lambda r: r["seed"])
                for m in MODELS}
        targets = [r["curve"][-1]["val_loss"] for r in mine["gpt"]]
        tokens = min(r["curve"][-1]["tokens"] for rs in mine.values() for r in rs)
        row = {"context": ctx, "gpt_final": float(np.mean(targets)), "equal_tokens": tokens}
        for m, rs in mine.items():
            row[f"{m}_time"] = float(np.mean([r["curve"][-1]["val_loss"] for r in rs]))
            row[f"{m}_time_spread"] = float(np.ptp([r["curve"][-1]["val_loss"] for r in rs]))
            row[f"{m}_tokens"] = float(np.mean([at(r["curve"], "tokens", tokens) for r in rs]))
            row[f"{m}_steps"] = float(np.mean([r["steps"] for r in rs]))
            for key in ("flops", "cpu_s"):
                hits = [reach(r["curve"], target, key) for r, target in zip(rs, targets)]
                row[f"{m}_reach_{key}"] = None if None in hits else float(np.mean(hits))
        pairs = [(reach(h["curve"], t, "flops"), reach(g["curve"], t, "flops"))
                 for h, g, t in zip(mine["hyena"], mine["gpt"], targets)]
        row["flops_ratio"] = None if any(None in p for p in pairs) else float(np.mean([a / b for a, b in pairs]))
        rows.append(row)
    return rows


def fmt(x, spec=".3f", none="not reached"):
    return none if x is None else format(x, spec)


def table(rows: list[dict]) -> str:
    lines = ["| context | val loss, equal time: Hyena | GPT | equal tokens (M): Hyena | GPT | steps Hyena / GPT |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['context']} | {r['hyena_time']:.3f} | {r['gpt_time']:.3f} | {r['equal_tokens'] / 1e6:.2f}: "
                     f"{r['hyena_tokens']:.3f} | {r['gpt_tokens']:.3f} | {r['hyena_steps']:.0f} / {r['gpt_steps']:.0f} |")
    lines += ["", "| context | GPT final loss | to reach it: Hyena TFLOP | GPT TFLOP | FLOPs Hyena / GPT | "
                  "CPU s Hyena / GPT |", "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        tf = [None if r[f"{m}_reach_flops"] is None else r[f"{m}_reach_flops"] / 1e12 for m in MODELS]
        lines.append(f"| {r['context']} | {r['gpt_final']:.3f} | {fmt(tf[0], '.2f')} | {fmt(tf[1], '.2f')} | "
                     f"{fmt(r['flops_ratio'], '.2f', 'n/a')} | {fmt(r['hyena_reach_cpu_s'], '.0f')} / "
                     f"{fmt(r['gpt_reach_cpu_s'], '.0f')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny models and budgets: the pipeline in under a minute")
    p.add_argument("--budget", type=float, default=None, help="CPU seconds of training per run")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="runs side by side")
    p.add_argument("--backend", default=None, help="default: numba if installed, else numpy (--quick: numpy)")
    p.add_argument("--out", default=str(HERE / "results"), help="folder for lm_compare.json")
    p.add_argument("--write-docs", action="store_true", help="also write docs/lm-compare.md and its plots")
    p.add_argument("--from-json", default=None, metavar="PATH",
                   help="no training: summarise the runs saved in this JSON again (and --write-docs)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(train_run(json.loads(args.worker))))
        return 0
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        result["summary"] = summarize(result["runs"], result["setup"])
        return report(result, args, Path(args.from_json))

    from minihyena.backends import available_backends

    setup = dict(QUICK if args.quick else FULL)
    if args.budget:
        setup["budget"] = args.budget
    backend = args.backend or ("numba" if "numba" in available_backends() and not args.quick else "numpy")
    check_sizes(setup)
    base = dict(setup=setup, backend=backend)
    print(f"lr sweep at context {setup['sweep_context']}, seed 0, {setup['budget'] / 3:.0f} CPU s per run, "
          f"backend {backend}", flush=True)
    sweep_setup = dict(setup, budget=setup["budget"] / 3)
    sweep = run_jobs([dict(base, setup=sweep_setup, budget=sweep_setup["budget"], model=m, context=setup["sweep_context"],
                           seed=0, lr=lr) for m in MODELS for lr in setup["lrs"]], args.jobs)
    best = {m: min((r for r in sweep if r["model"] == m), key=lambda r: r["curve"][-1]["val_loss"]
                   if "diverged_at" not in r else float("inf"))["lr"] for m in MODELS}
    print(f"best lr: {best}; main runs, {setup['budget']:.0f} CPU s each", flush=True)
    runs = run_jobs([dict(base, budget=setup["budget"], model=m, context=c, seed=s, lr=best[m])
                     for c in setup["contexts"] for s in setup["seeds"] for m in MODELS], args.jobs)
    rows = summarize(runs, setup)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"setup": setup, "backend": backend, "best_lr": best, "sweep": sweep, "runs": runs, "summary": rows,
              "machine": {"cpus": os.cpu_count(), "platform": sys.platform}}
    path = out / ("lm_compare_quick.json" if args.quick else "lm_compare.json")
    return report(result, args, path)


def report(result: dict, args, path: Path) -> int:
    """Write the JSON, print the tables and the closing line; with --write-docs, the docs page and plots."""
    rows = result["summary"]
    path.write_text(json.dumps(result, indent=1) + "\n")
    print("\n" + table(rows) + f"\n\nresults: {path}")
    if args.write_docs:
        from lm_compare_report import write_report

        print("docs:", ", ".join(write_report(result, HERE.parent / "docs")))
    mid = next((r for r in rows if r["context"] == 1024), rows[len(rows) // 2])
    last = next((r for r in rows if r["context"] == 4096), rows[-1])
    print(f"lm_compare: flops ratio hyena/gpt to reach gpt loss at {mid['context']} = {fmt(mid['flops_ratio'], '.2f', 'n/a')}, "
          f"val loss at equal time {last['context']}: hyena {last['hyena_time']:.3f} gpt {last['gpt_time']:.3f}")
    return 0


def check_sizes(setup: dict) -> None:
    """Both models have the same width, depth and MLP ratio; their parameter counts must agree within 5%."""
    from minihyena.nn.model import HyenaLM

    n = {m: HyenaLM(model_config(setup, m, max(setup["contexts"]), 65)).num_parameters() for m in MODELS}
    gap = abs(n["hyena"] - n["gpt"]) / n["gpt"]
    print(f"parameters: Hyena {n['hyena']:,}, GPT {n['gpt']:,} ({gap:.1%} apart)")
    if gap > 0.05:
        raise SystemExit(f"the models differ by {gap:.1%} in parameters, more than 5%")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
