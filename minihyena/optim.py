"""AdamW with parameter groups, a cosine schedule with linear warm-up, global-norm gradient clipping."""
from __future__ import annotations

import math

import numpy as np

from .nn.module import Module, Parameter

# Parameters under these module names generate filters from positions: no weight decay for them.
_NO_DECAY_PARTS = ("filter_fn",)


def param_groups(model: Module, weight_decay: float = 0.1) -> list[dict]:
    """Two groups: matrices and embeddings decay; biases, norms, skip terms, frequencies and the whole
    implicit filter network do not (decaying them would pull the filters towards zero)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim >= 2 and not any(part in name.split(".") for part in _NO_DECAY_PARTS):
            decay.append(p)
        else:
            no_decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class AdamW:
    r"""Adam with decoupled weight decay (Loshchilov & Hutter):

    $m \leftarrow \beta_1 m + (1-\beta_1) g$, $v \leftarrow \beta_2 v + (1-\beta_2) g^2$,
    $\theta \leftarrow \theta - \eta\left(\frac{\hat m}{\sqrt{\hat v} + \epsilon} + \lambda \theta\right)$
    with bias-corrected $\hat m = m / (1-\beta_1^t)$, $\hat v = v / (1-\beta_2^t)$.
    ``params`` is a list of Parameters or of groups ``{"params": [...], "weight_decay": wd}``.
    """

    def __init__(self, params, lr: float = 6e-4, betas=(0.9, 0.98), eps: float = 1e-8, weight_decay: float = 0.1):
        params = list(params)
        if params and isinstance(params[0], Parameter):
            params = [{"params": params}]
        self.groups = [{"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, **g} for g in params]
        self.lr = lr
        self.t = 0
        self.state: dict[int, tuple] = {}

    def params(self) -> list[Parameter]:
        return [p for g in self.groups for p in g["params"]]

    def step(self) -> None:
        """One update of every parameter that has a gradient, at the current ``self.lr``."""
        self.t += 1
        for g in self.groups:
            b1, b2 = g["betas"]
            lr, eps, wd = self.lr, g["eps"], g["weight_decay"]
            c1, c2 = 1.0 - b1**self.t, 1.0 - b2**self.t
            for p in g["params"]:
                if p.grad is None:
                    continue
                xp = p.backend.xp
                m, v = self.state.get(id(p)) or (xp.zeros_like(p.data), xp.zeros_like(p.data))
                self.state[id(p)] = (m, v)
                # the formulas of the class docstring, in place (Backend.adamw_update; fused where it can be)
                p.backend.adamw_update(p.data, p.grad, m, v, lr, b1, b2, eps, wd, c1, c2)

    def state_dict(self) -> dict:
        """Moments as NumPy arrays keyed by parameter position, plus the step count."""
        out = {"t": np.asarray(self.t)}
        for i, p in enumerate(self.params()):
            if id(p) in self.state:
                m, v = self.state[id(p)]
                out[f"m.{i}"] = np.array(p.backend.to_numpy(m), copy=True)  # a snapshot: the moments
                out[f"v.{i}"] = np.array(p.backend.to_numpy(v), copy=True)  # are updated in place
        return out

    def load_state_dict(self, state: dict) -> None:
        self.t = int(state["t"])
        self.state = {}
        for i, p in enumerate(self.params()):
            if f"m.{i}" in state:
                m, v = np.asarray(state[f"m.{i}"]), np.asarray(state[f"v.{i}"])
                if m.shape != p.shape or v.shape != p.shape:
                    raise ValueError(f"optimizer state {i} has shape {m.shape}, parameter has {p.shape}")
                m, v = np.array(m, dtype=p.dtype), np.array(v, dtype=p.dtype)  # copies, updated in place later
                self.state[id(p)] = (p.backend.asarray(m), p.backend.asarray(v))


def cosine_lr(step: int, max_lr: float, warmup: int, total: int, min_lr: float | None = None) -> float:
    """Linear warm-up from 0 to ``max_lr`` over ``warmup`` steps, then cosine decay to ``min_lr`` at ``total``."""
    min_lr = max_lr / 10 if min_lr is None else min_lr
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def clip_grad_norm(params, max_norm: float) -> float:
    r"""Scale all gradients so their global norm $\sqrt{\sum \|g\|^2}$ is at most ``max_norm``; return the norm before.

    A non-finite norm (an overflowed or NaN gradient) is returned as is and nothing is scaled: the caller
    should skip the update.
    """
    params = [p for p in params if p.grad is not None]
    total = math.sqrt(sum(float((p.grad.astype(np.float64) ** 2).sum()) for p in params))
    if max_norm > 0 and math.isfinite(total) and total > max_norm:
        scale = max_norm / (total + 1e-6)
        for p in params:
            p.grad *= scale
    return total
