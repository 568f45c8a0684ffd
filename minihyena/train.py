"""The training loop: random-window batches, AdamW + cosine schedule, periodic validation, atomic
checkpoints, exact resume, and clean stops on Ctrl-C or a non-finite loss."""
from __future__ import annotations

import dataclasses
import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .autograd import no_grad
from .backends import get_backend
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, section
from .data.text import CharTokenizer, TextDataset, load_bundled_corpus, load_text
from .nn.model import HyenaConfig, HyenaLM
from .optim import AdamW, clip_grad_norm, cosine_lr, param_groups
from .progress import Progress


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, unusable resume state); the message says why."""


@dataclass
class TrainConfig:
    """Training settings (saved in the checkpoint; ``--resume`` reuses them)."""

    data: str | None = None  # a UTF-8 text file; None: the bundled Shakespeare corpus
    out: str = "out"
    max_iters: int = 1500
    seq_len: int = 128
    batch_size: int = 16
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_iters: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.98
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_iters: int = 20
    val_fraction: float = 0.1
    seed: int = 0
    backend: str | None = None


@dataclass
class TrainResult:
    """What :meth:`Trainer.run` did: last step, last train loss, last validation loss, checkpoint path,
    how it stopped ("done" or "interrupted"), wall-clock seconds and train tokens per second."""

    step: int
    train_loss: float
    val_loss: float | None
    checkpoint: Path | None
    stopped: str  # "done", "interrupted"
    seconds: float
    tokens_per_second: float


def _rng_states(model) -> list:
    return [m.rng.bit_generator.state for m in model.modules() if hasattr(m, "rng")]


def _set_rng_states(model, states: list) -> None:
    for m, s in zip([m for m in model.modules() if hasattr(m, "rng")], states):
        m.rng.bit_generator.state = s


def _check_settings(cfg: TrainConfig) -> None:
    """Reject settings the loop cannot run with, naming the command-line flag."""
    least = {"max_iters": 1, "seq_len": 1, "batch_size": 1, "eval_interval": 1, "eval_iters": 1, "warmup_iters": 0}
    for name, low in least.items():
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
    if not cfg.grad_clip >= 0:
        raise ValueError(f"--grad-clip must be >= 0 (0: no clipping), got {cfg.grad_clip}")


class Trainer:
    """Holds the model, optimiser, data and the state a checkpoint must capture to resume exactly."""

    def __init__(self, cfg: TrainConfig, model_cfg: HyenaConfig | None = None, resume: bool = False, log=print):
        _check_settings(cfg)
        self.cfg, self.log = cfg, log
        self.out = Path(cfg.out)
        self.ckpt_path = self.out / "ckpt.npz"
        self.backend = get_backend(cfg.backend)
        text = load_text(cfg.data) if cfg.data else load_bundled_corpus()
        meta = None
        if resume:
            arrays, meta = load_checkpoint(self.ckpt_path)
            try:
                tokenizer = CharTokenizer.from_dict(meta["tokenizer"])
                model_cfg = HyenaConfig.from_dict(meta["model_config"])
            except (KeyError, TypeError, ValueError) as exc:
                raise CheckpointError(f"{self.ckpt_path} cannot be resumed: unusable header ({exc})") from None
        else:
            tokenizer = CharTokenizer.from_text(text)
            model_cfg = dataclasses.replace(model_cfg or HyenaConfig(), vocab_size=tokenizer.vocab_size)
            if model_cfg.l_max < cfg.seq_len:
                model_cfg = dataclasses.replace(model_cfg, l_max=cfg.seq_len)
        if cfg.seq_len > model_cfg.l_max:
            raise ValueError(f"--seq-len {cfg.seq_len} is longer than the model's l_max = {model_cfg.l_max}")
        self.tokenizer = tokenizer
        self.data = TextDataset(tokenizer.encode(text, name=f"training text {cfg.data or '(bundled)'}"), cfg.val_fraction)
        self.model = HyenaLM(model_cfg, seed=cfg.seed).to(self.backend)
        self.opt = AdamW(
            param_groups(self.model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2)
        )
        self.rng = np.random.default_rng(cfg.seed)
        self.step = 0
        self.history: list[dict] = []
        if meta is not None:
            self._restore(arrays, meta)

    # ------------------------------------------------------------------ checkpoint state
    def _restore(self, arrays: dict, meta: dict) -> None:
        try:
            self.model.load_state_dict(section(arrays, "model"))
            self.opt.load_state_dict(section(arrays, "optim"))
            state = meta["train_state"]
            self.step = int(state["step"])
            self.rng.bit_generator.state = state["rng"]
            _set_rng_states(self.model, state["module_rngs"])
            self.history = state.get("history", [])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{self.ckpt_path} cannot be resumed: {exc}") from None

    def save(self) -> Path:
        arrays = {"model." + k: v for k, v in self.model.state_dict().items()}
        arrays.update({"optim." + k: v for k, v in self.opt.state_dict().items()})
        meta = {
            "model_config": self.model.config.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "train_config": dataclasses.asdict(self.cfg),
            "train_state": {
                "step": self.step,
                "rng": self.rng.bit_generator.state,
                "module_rngs": _rng_states(self.model),
                "history": self.history,
            },
        }
        return save_checkpoint(self.ckpt_path, arrays, meta)

    def _last_checkpoint(self) -> str:
        return str(self.ckpt_path) if self.ckpt_path.exists() else "(none saved yet)"

    # ------------------------------------------------------------------ steps
    def batch(self, split: str, rng):
        x, y = self.data.get_batch(split, self.cfg.batch_size, self.cfg.seq_len, rng)
        return self.backend.asarray(x), self.backend.asarray(y)

    def train_step(self) -> float:
        """One optimiser step; returns the loss (the parameters are untouched if it is not finite)."""
        cfg = self.cfg
        self.opt.lr = cosine_lr(self.step, cfg.lr, cfg.warmup_iters, cfg.max_iters, cfg.min_lr)
        x, y = self.batch("train", self.rng)
        loss = self.model.loss(x, y)
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingError(
                f"loss became {value} at step {self.step}; stopped without updating. The last good checkpoint "
                f"is kept at {self._last_checkpoint()}. Try a lower --lr or --grad-clip."
            )
        self.model.zero_grad()
        loss.backward()
        norm = clip_grad_norm(self.model.parameters(), cfg.grad_clip)
        if not math.isfinite(norm):
            raise TrainingError(
                f"the gradient norm became {norm} at step {self.step} (loss {value:.4f}); stopped without updating. "
                f"The last good checkpoint is kept at {self._last_checkpoint()}. Try a lower --lr or --grad-clip."
            )
        self.opt.step()
        self.step += 1
        return value

    def evaluate(self) -> float:
        """Mean validation loss over ``eval_iters`` batches, the same batches every time."""
        rng = np.random.default_rng(self.cfg.seed + 1_000_003)
        self.model.eval()
        with no_grad():
            losses = [self.model.loss(*self.batch("val", rng)).item() for _ in range(self.cfg.eval_iters)]
        self.model.train()
        return float(np.mean(losses))

    # ------------------------------------------------------------------ loop
    def run(self, progress: bool = True) -> TrainResult:
        cfg = self.cfg
        self.log(
            f"training on backend {self.backend.name!r}: {self.model.num_parameters():,} parameters, "
            f"{len(self.data.train):,} training tokens, vocab {self.tokenizer.vocab_size}, "
            f"steps {self.step}->{cfg.max_iters}, batch {cfg.batch_size} x {cfg.seq_len}"
        )
        interrupted = []
        old_handler = signal.getsignal(signal.SIGINT)

        def on_sigint(signum, frame):  # finish the current step, then save and stop
            if interrupted:
                raise KeyboardInterrupt
            interrupted.append(True)

        signal.signal(signal.SIGINT, on_sigint)
        bar = Progress(cfg.max_iters, start=self.step) if progress else None
        t0, tokens, loss, val = time.perf_counter(), 0, float("nan"), None
        try:
            while self.step < cfg.max_iters and not interrupted:
                loss = self.train_step()
                tokens += cfg.batch_size * cfg.seq_len
                self.history.append({"step": self.step, "loss": loss})
                if bar:
                    rate = tokens / max(time.perf_counter() - t0, 1e-9)
                    bar.update(self.step, loss=f"{loss:.3f}", tok_s=f"{rate:,.0f}")
                if self.step % cfg.eval_interval == 0 or self.step == cfg.max_iters:
                    val = self.evaluate()
                    if not math.isfinite(val):  # never replace a good checkpoint with a broken model
                        raise TrainingError(
                            f"validation loss became {val} at step {self.step}; not saved. The last good checkpoint "
                            f"is kept at {self._last_checkpoint()}."
                        )
                    self.history[-1]["val_loss"] = val
                    self.save()
                    (bar.write if bar else self.log)(f"step {self.step}: train loss {loss:.4f}, val loss {val:.4f}, saved {self.ckpt_path}")
        finally:
            signal.signal(signal.SIGINT, old_handler)
            if bar:
                bar.close()
        seconds = time.perf_counter() - t0
        stopped = "done"
        if interrupted:
            self.save()
            stopped = "interrupted"
            self.log(f"interrupted at step {self.step}: checkpoint saved to {self.ckpt_path}; continue with --resume")
        (self.out / "history.json").write_text(json.dumps(self.history))
        return TrainResult(self.step, loss, val, self.ckpt_path, stopped, seconds, tokens / max(seconds, 1e-9))
