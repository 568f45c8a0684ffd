"""Train small models on a synthetic task (associative recall, induction head) and compare mixers.

Every step draws fresh examples; the test set is fixed (its own seed) and scored on the answer
token only. A run stops at ``max_steps``, at ``time_limit`` seconds, or once the test accuracy
reaches ``target``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .autograd import no_grad
from .backends import get_backend
from .data.synthetic import TASKS, answer_accuracy
from .nn.model import HyenaConfig, HyenaLM
from .optim import AdamW, clip_grad_norm, cosine_lr, param_groups


@dataclass
class TaskConfig:
    """A synthetic-task run: the task and its size, the model (``d_model``, ``n_layer``, ``order``,
    ``filter_w``, ``n_head``), the optimiser, and when to stop (``max_steps``, ``time_limit`` seconds,
    or test accuracy >= ``target``)."""

    task: str = "recall"
    vocab_size: int = 10
    seq_len: int = 256
    d_model: int = 64
    n_layer: int = 2
    order: int = 2
    filter_w: float = 10.0
    n_head: int = 4
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_iters: int = 50
    max_steps: int = 2000
    time_limit: float | None = None  # seconds per model
    eval_every: int = 100
    test_size: int = 256
    target: float | None = 0.99
    seed: int = 0
    backend: str | None = None


def evaluate(model, x, y, batch_size: int) -> float:
    """Answer accuracy on (x, y), in batches, without recording a graph."""
    model.eval()
    hits = 0.0
    with no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(x[i : i + batch_size]).numpy()
            hits += answer_accuracy(logits, y[i : i + batch_size]) * len(x[i : i + batch_size])
    model.train()
    return hits / len(x)


def train_task(mixer: str, cfg: TaskConfig, log=None) -> dict:
    """Train one model with ``mixer`` on ``cfg.task``; return accuracy, steps, seconds and size."""
    if cfg.task not in TASKS:
        raise ValueError(f"unknown task {cfg.task!r}; choose one of {', '.join(TASKS)}")
    make = TASKS[cfg.task]
    backend = get_backend(cfg.backend)
    model = HyenaLM(
        HyenaConfig(
            vocab_size=cfg.vocab_size, d_model=cfg.d_model, n_layer=cfg.n_layer, l_max=cfg.seq_len,
            order=cfg.order, filter_w=cfg.filter_w, mixer=mixer, n_head=cfg.n_head,
        ),
        seed=cfg.seed,
    ).to(backend)
    opt = AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    x_test, y_test = make(cfg.test_size, cfg.seq_len, cfg.vocab_size, rng=np.random.default_rng(cfg.seed + 12345))
    t0 = time.perf_counter()
    acc, loss, step = 0.0, float("nan"), 0
    while step < cfg.max_steps:
        opt.lr = cosine_lr(step, cfg.lr, cfg.warmup_iters, cfg.max_steps)
        x, y = make(cfg.batch_size, cfg.seq_len, cfg.vocab_size, rng=rng)
        out = model.loss(backend.asarray(x), backend.asarray(y))
        loss = out.item()
        model.zero_grad()
        out.backward()
        clip_grad_norm(model.parameters(), 1.0)
        opt.step()
        step += 1
        elapsed = time.perf_counter() - t0
        out_of_time = cfg.time_limit is not None and elapsed > cfg.time_limit
        if step % cfg.eval_every == 0 or step == cfg.max_steps or out_of_time:
            acc = evaluate(model, x_test, y_test, 64)
            if log:
                log(f"  {mixer:>15} step {step:5d}  loss {loss:.3f}  test accuracy {acc:.3f}  ({elapsed:.0f} s)")
            if (cfg.target is not None and acc >= cfg.target) or out_of_time:
                break
    return {
        "mixer": mixer,
        "params": model.num_parameters(),
        "steps": step,
        "seconds": time.perf_counter() - t0,
        "loss": loss,
        "accuracy": acc,
    }


def format_table(rows: list[dict], cfg: TaskConfig) -> str:
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
