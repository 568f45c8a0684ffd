"""Train small models on a synthetic task (associative recall, induction head) and compare mixers.

Every step draws fresh examples; the test set is fixed (its own seed) and scored on the answer
token only. A run stops at ``max_steps``, at ``time_limit`` seconds of training, or once the test
accuracy reaches ``target``. :func:`run_grid` repeats runs over vocabularies, lengths, mixers,
learning rates and seeds; :func:`summarize` gives the mean and spread over seeds.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .autograd import no_grad
from .backends import get_backend
from .data.synthetic import TASKS, answer_accuracy, answer_loss
from .fileio import atomic_write_text
from .nn.model import HyenaConfig, HyenaLM, check_mixer
from .optim import AdamW, clip_grad_norm, param_groups

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: this process's CPU seconds


@dataclass
class TaskConfig:
    """A synthetic-task run: the task and its size, the model (``d_model``, ``n_layer``, ``order``,
    ``filter_w``, ``n_head``, ``mlp_ratio``), the optimiser, and when to stop (``max_steps``, ``time_limit`` seconds
    of training on ``clock``, or test accuracy >= ``target``). Evaluation time is not counted."""

    task: str = "recall"
    vocab_size: int = 10
    seq_len: int = 256
    d_model: int = 64
    n_layer: int = 2
    order: int = 2
    filter_w: float = 10.0
    n_head: int = 4
    mlp_ratio: int = 4  # MLP width / d_model
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_iters: int = 50
    max_steps: int = 2000
    time_limit: float | None = None  # seconds of training per model
    clock: str = "wall"  # one of CLOCKS
    eval_every: int = 100
    test_size: int = 256
    target: float | None = 0.99
    seed: int = 0
    backend: str | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        TASKS[self.task](1, self.seq_len, self.vocab_size, rng=0)  # refuses a vocabulary or length too small
        for name in ("d_model", "n_layer", "n_head", "mlp_ratio", "batch_size", "max_steps", "eval_every", "test_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup_iters < 0 or self.seed < 0:
            raise ValueError(f"warmup_iters and seed must be >= 0, got {self.warmup_iters} and {self.seed}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"the learning rate must be a positive number, got {self.lr}")
        if self.time_limit is not None and not (math.isfinite(self.time_limit) and self.time_limit > 0):
            raise ValueError(f"time_limit must be a positive number of seconds, got {self.time_limit}")
        if self.target is not None and not 0 < self.target <= 1:
            raise ValueError(f"target must be an accuracy in (0, 1], got {self.target}")
        if self.clock not in CLOCKS:
            raise ValueError(f"unknown clock {self.clock!r}; choose one of {', '.join(CLOCKS)}")


def budget_lr(cfg: TaskConfig, step: int, elapsed: float) -> float:
    r"""Learning rate of ``step`` after ``elapsed`` training seconds: a linear warm-up over
    ``warmup_iters`` steps times a cosine decay to lr/10 over the budget,

    $\eta = \eta_{max} \min\big(1, \tfrac{s+1}{s_w}\big) \big(0.1 + 0.45\,(1 + \cos \pi p)\big)$,
    $p = \max\big(\tfrac{s}{s_{max}}, \tfrac{t}{t_{max}}\big)$,

    so a run stopped by its time limit has annealed by then, whichever mixer it is."""
    p = step / cfg.max_steps
    if cfg.time_limit is not None:
        p = max(p, elapsed / cfg.time_limit)
    warm = min(1.0, (step + 1) / cfg.warmup_iters) if cfg.warmup_iters else 1.0
    return cfg.lr * warm * (0.1 + 0.45 * (1 + math.cos(math.pi * min(p, 1.0))))


def evaluate(model, x, y, batch_size: int) -> tuple[float, float]:
    """Answer accuracy and answer cross-entropy (nats) on (x, y), in batches, without a graph."""
    model.eval()
    hits = nats = 0.0
    with no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(x[i : i + batch_size], last_only=True).numpy()  # (b, 1, V)
            yb = y[i : i + batch_size, -1:]  # (b, 1): the answer
            hits += answer_accuracy(logits, yb) * len(yb)
            nats += answer_loss(logits, yb) * len(yb)
    model.train()
    return hits / len(x), nats / len(x)


def model_config(cfg: TaskConfig, mixer: str) -> HyenaConfig:
    """The model a task run trains: ``cfg``'s sizes with ``mixer``, ``l_max`` = the sequence length."""
    return HyenaConfig(vocab_size=cfg.vocab_size, d_model=cfg.d_model, n_layer=cfg.n_layer, l_max=cfg.seq_len,
                       order=cfg.order, filter_w=cfg.filter_w, mixer=mixer, n_head=cfg.n_head,
                       mlp_ratio=cfg.mlp_ratio)


def train_task(mixer: str, cfg: TaskConfig, log=None) -> dict:
    """Train one model with ``mixer`` on ``cfg.task``; return its settings, size, steps, training
    and evaluation seconds, final loss and accuracy, and the curve (one entry per evaluation)."""
    check_mixer(mixer)
    make = TASKS[cfg.task]
    backend = get_backend(cfg.backend)
    clock = CLOCKS[cfg.clock]
    model = HyenaLM(model_config(cfg, mixer), seed=cfg.seed).to(backend)
    opt = AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    x_test, y_test = make(cfg.test_size, cfg.seq_len, cfg.vocab_size, rng=np.random.default_rng(cfg.seed + 12345))
    wall0 = time.perf_counter()
    train_s = eval_s = 0.0  # on cfg.clock
    acc, test_loss, loss, step, stopped, curve = 0.0, float("nan"), float("nan"), 0, "steps", []
    while step < cfg.max_steps:
        t0 = clock()
        opt.lr = budget_lr(cfg, step, train_s)
        x, y = make(cfg.batch_size, cfg.seq_len, cfg.vocab_size, rng=rng)
        out = model.loss(x, y)  # host ids: checked on the host, then copied to the device
        loss = out.item()
        model.zero_grad()
        out.backward()
        clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        step += 1
        train_s += clock() - t0
        out_of_time = cfg.time_limit is not None and train_s >= cfg.time_limit
        if step % cfg.eval_every == 0 or step == cfg.max_steps or out_of_time:
            t0 = clock()
            acc, test_loss = evaluate(model, x_test, y_test, cfg.batch_size)
            eval_s += clock() - t0
            curve.append({"step": step, "seconds": round(train_s, 3), "loss": loss, "accuracy": acc, "test_loss": test_loss})
            if log:
                log(f"  {mixer:>15} step {step:5d}  loss {loss:.3f}  test accuracy {acc:.3f}  ({train_s:.0f} s)")
            if cfg.target is not None and acc >= cfg.target:
                stopped = "target"
                break
            if out_of_time:
                stopped = "time"
                break
    return {
        "mixer": mixer, "vocab_size": cfg.vocab_size, "seq_len": cfg.seq_len, "seed": cfg.seed, "lr": cfg.lr,
        "batch_size": cfg.batch_size, "params": model.num_parameters(), "steps": step, "stopped": stopped,
        "seconds": train_s, "eval_seconds": eval_s, "wall_seconds": time.perf_counter() - wall0,
        "loss": loss, "accuracy": acc, "test_loss": test_loss, "curve": curve,
    }


def parse_lrs(items, mixers, default: float = 3e-3) -> dict[str, list[float]]:
    """Learning rates per mixer from ``--lr`` items: ``VALUE`` (for every mixer not named) or
    ``MIXER=VALUE[,VALUE...]``; several values make a sweep. E.g. ``3e-3 attention-rope=1e-3``."""
    plain, named = [], {}
    for item in items or []:
        name, _, values = item.rpartition("=")
        try:
            lrs = [float(v) for v in values.split(",")]
        except ValueError:
            raise ValueError(f"--lr: {item!r} is not VALUE or MIXER=VALUE[,VALUE...]") from None
        if not all(math.isfinite(v) and v > 0 for v in lrs):
            raise ValueError(f"--lr: learning rates must be positive numbers, got {item!r}")
        if not name:
            plain += lrs
            continue
        check_mixer(name)
        if name not in mixers:
            raise ValueError(f"--lr names mixer {name!r}, which is not among --mixers ({', '.join(mixers)})")
        if name in named:
            raise ValueError(f"--lr: mixer {name!r} is given twice")
        named[name] = lrs
    return {m: named.get(m, plain or [default]) for m in mixers}


def run_grid(cfg: TaskConfig, vocabs, seq_lens, lrs: dict[str, list[float]], seeds, log=None, announce=None,
             on_run=None) -> list[dict]:
    """Every (vocabulary, length, mixer, lr, seed) run of ``cfg``, seeds innermost. Callbacks:
    ``announce(line)`` before each run, ``log(line)`` at each evaluation, ``on_run(runs)`` after each
    run (e.g. to save them)."""
    runs = []
    for vocab in vocabs:
        for seq_len in seq_lens:
            for mixer, mixer_lrs in lrs.items():
                for lr in mixer_lrs:
                    for seed in seeds:
                        run_cfg = dataclasses.replace(cfg, vocab_size=vocab, seq_len=seq_len, lr=lr, seed=seed)
                        if announce:
                            announce(f"{cfg.task}, vocab {vocab}, L = {seq_len}: training {mixer}, lr {lr:g}, seed {seed}")
                        runs.append(train_task(mixer, run_cfg, log=log))
                        if on_run:
                            on_run(runs)
    return runs


def save_results(path, results: dict) -> None:
    """Write ``results`` as JSON through a temporary file renamed into place (a crash keeps the last copy)."""
    path = Path(path)
    atomic_write_text(path, json.dumps(results, indent=1) + "\n")


def summarize(runs: list[dict]) -> list[dict]:
    """Group runs by (vocabulary, length, mixer, lr): accuracy mean, sample standard deviation over
    seeds (0 for one seed), min and max; mean steps and seconds."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["vocab_size"], r["seq_len"], r["mixer"], r["lr"]), []).append(r)
    rows = []
    for (vocab, seq_len, mixer, lr), rs in groups.items():
        acc = np.array([r["accuracy"] for r in rs])
        rows.append({
            "vocab_size": vocab, "seq_len": seq_len, "mixer": mixer, "lr": lr, "seeds": [r["seed"] for r in rs],
            "params": rs[0]["params"], "batch_size": rs[0]["batch_size"],
            "accuracy_mean": float(acc.mean()), "accuracy_sd": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            "accuracy_min": float(acc.min()), "accuracy_max": float(acc.max()),
            "steps_mean": float(np.mean([r["steps"] for r in rs])),
            "seconds_mean": float(np.mean([r["seconds"] for r in rs])),
        })
    return rows


def format_summary(rows: list[dict]) -> str:
    """A Markdown table of :func:`summarize` rows: accuracy as mean ± sd over seeds, and its range."""
    lines = [
        "| vocab | L | mixer | lr | seeds | batch | parameters | steps | seconds | test accuracy | min – max |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['vocab_size']} | {r['seq_len']} | {r['mixer']} | {r['lr']:g} | {len(r['seeds'])} | {r['batch_size']} "
            f"| {r['params']:,} | {r['steps_mean']:.0f} | {r['seconds_mean']:.0f} "
            f"| {100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_sd']:.1f}% "
            f"| {100 * r['accuracy_min']:.1f} – {100 * r['accuracy_max']:.1f}% |"
        )
    return "\n".join(lines)


def format_table(rows: list[dict], cfg: TaskConfig) -> str:
    """A Markdown table of single runs (:func:`train_task` results) under a line of settings."""
    head = (
        f"{cfg.task}: vocab {cfg.vocab_size}, L = {cfg.seq_len}, {cfg.n_layer} layers, width {cfg.d_model}, "
        f"batch {cfg.batch_size}, backend {get_backend(cfg.backend).name}\n"
        "| mixer | parameters | steps | seconds | train loss | test accuracy |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    lines = [
        f"| {r['mixer']} | {r['params']:,} | {r['steps']} | {r['seconds']:.0f} | {r['loss']:.3f} | {100 * r['accuracy']:.1f}% |"
        for r in rows
    ]
    return "\n".join([head, *lines])
