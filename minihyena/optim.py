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


_GROUP_KEYS = ("params", "lr", "betas", "eps", "weight_decay")


class AdamW:
    r"""Adam with decoupled weight decay (Loshchilov & Hutter):

    $m \leftarrow \beta_1 m + (1-\beta_1) g$, $v \leftarrow \beta_2 v + (1-\beta_2) g^2$,
    $\theta \leftarrow \theta (1 - \eta\lambda) - \eta\, \frac{\hat m}{\sqrt{\hat v} + \epsilon}$
    with bias-corrected $\hat m = m / (1-\beta_1^t)$, $\hat v = v / (1-\beta_2^t)$.

    ``params`` is a list of Parameters or of groups ``{"params": [...], "lr", "betas", "eps",
    "weight_decay"}`` (``params`` required, the others optional; any other key is an error). ``self.lr`` is the current
    learning rate, which a schedule sets before each step; a group's own ``lr`` scales with it:
    the group steps with $\eta = \eta_{\text{group}} \cdot \text{self.lr} / \text{lr}$ (``lr`` given to the
    constructor), so it runs at exactly its ``lr`` when no schedule changes ``self.lr``.
    """

    def __init__(self, params, lr: float = 6e-4, betas=(0.9, 0.98), eps: float = 1e-8, weight_decay: float = 0.1):
        params = list(params)
        if params and isinstance(params[0], Parameter):
            params = [{"params": params}]
        for i, g in enumerate(params):
            unknown = sorted(set(g) - set(_GROUP_KEYS))
            if unknown:
                raise ValueError(f"AdamW: parameter group {i} has unknown keys {unknown}; a group may set {list(_GROUP_KEYS)}")
            if "params" not in g:
                raise ValueError(f"AdamW: parameter group {i} has no 'params'")
            if lr == 0 and g.get("lr", 0) != 0:
                raise ValueError(f"AdamW: group {i} sets lr = {g['lr']}, which scales with the base lr, but the base lr is 0")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        self.groups = [{**defaults, **g, "params": list(g["params"])} for g in params]
        self.base_lr = lr
        self.lr = lr
        self.t = 0
        self.state: dict[int, tuple] = {}

    def params(self) -> list[Parameter]:
        return [p for g in self.groups for p in g["params"]]

    def group_lr(self, group: dict) -> float:
        """The learning rate ``group`` steps with now: its own lr scaled by the schedule's ``self.lr / base lr``."""
        return self.lr if group["lr"] == self.base_lr else group["lr"] * (self.lr / self.base_lr)

    def step(self) -> None:
        """One update of every parameter that has a gradient (the formulas of the class docstring, in place)."""
        self.t += 1
        for g in self.groups:
            b1, b2 = g["betas"]
            lr, eps, wd = self.group_lr(g), g["eps"], g["weight_decay"]
            c1, c2 = 1.0 - b1**self.t, 1.0 - b2**self.t  # bias corrections
            for p in g["params"]:
                if p.grad is None:
                    continue
                xp = p.backend.xp
                m, v = self.state.get(id(p)) or (xp.zeros_like(p.data), xp.zeros_like(p.data))
                self.state[id(p)] = (m, v)
                fused = p.backend.fused("adamw_update", p.data, p.grad, m, v)
                if fused is not None:
                    fused(p.data, p.grad, m, v, lr, b1, b2, eps, wd, c1, c2)
                else:
                    adamw_update(p.data, p.grad, m, v, lr, b1, b2, eps, wd, c1, c2)

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


# AdamW's formulas, written once: arrays or scalars, so the reference below runs them on whole arrays
# and the Numba kernel compiles them per element (scalars passed in the parameters' dtype).
def adamw_moments(m, v, g, b1, nb1, b2, nb2):
    r"""$m' = \beta_1 m + (1-\beta_1) g$, $v' = \beta_2 v + (1-\beta_2) g^2$ (``nb1`` $= 1-\beta_1$, ``nb2`` $= 1-\beta_2$)."""
    return b1 * m + nb1 * g, b2 * v + nb2 * (g * g)


def adamw_param(p, m, v, decay, step, c2, eps):
    r"""$p' = p (1 - \eta\lambda) - (\eta / c_1)\, m / (\sqrt{v / c_2} + \epsilon)$ (``decay``, ``step`` $= \eta / c_1$)."""
    return p * decay - step * m / (np.sqrt(v / c2) + eps)


def adamw_update(p, g, m, v, lr: float, b1: float, b2: float, eps: float, wd: float, c1: float, c2: float) -> None:
    r"""The reference AdamW step, in place on arrays: :func:`adamw_moments` then :func:`adamw_param`, with
    $c_1 = 1 - \beta_1^t$, $c_2 = 1 - \beta_2^t$. Python floats take the arrays' dtype; ``np.sqrt`` runs
    on the arrays' own device (NumPy hands other array types to their library)."""
    m[...], v[...] = adamw_moments(m, v, g, b1, 1 - b1, b2, 1 - b2)
    p[...] = adamw_param(p, m, v, 1.0 - lr * wd if wd else 1.0, lr / c1, c2, eps)


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
    if not params:
        return 0.0
    squares = [p.backend.xp.vdot(p.grad, p.grad) for p in params]  # 0-d, on the gradients' device (BLAS dot)
    total = math.sqrt(float(sum(squares[1:], squares[0])))  # one transfer to the host
    if math.isinf(total):  # a float32 square overflows above 1.8e19: sum again in float64 (a true inf stays)
        squares = [(p.grad.astype(np.float64) ** 2).sum() for p in params]
        total = math.sqrt(float(sum(squares[1:], squares[0])))
    if max_norm > 0 and math.isfinite(total) and total > max_norm:
        scale = max_norm / (total + 1e-6)
        for p in params:
            p.grad *= scale
    return total
