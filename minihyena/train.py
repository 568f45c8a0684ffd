"""The training loop: random-window batches, AdamW + cosine schedule, periodic validation, atomic
checkpoints, exact resume, and clean stops on Ctrl-C or a non-finite loss.

The same loop runs data-parallel on several processes (``mpiexec -n P``): every rank draws its own
windows, the gradients are averaged over the ranks before clipping, and rank 0 reads the files and
writes the checkpoints (see :mod:`minihyena.distributed`)."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .autograd import no_grad
from .backends import get_backend
from .checkpoint import CheckpointError, header_problem, is_resumable, load_checkpoint, save_checkpoint, section
from .data.prepared import PreparedCorpus, cached_corpus
from .data.text import CharTokenizer, TextDataset, load_bundled_corpus
from .data.tokenizers import byte_count, tokenizer_from_dict
from .distributed import limit_threads, world
from .fileio import atomic_write_text
from .flops import fmt_flops, train_step_flops
from .memory import check_fits, training_bytes
from .messages import plural
from .nn.model import HyenaConfig, HyenaLM
from .nn.module import clear_grads
from .optim import AdamW, clip_grad_norm, cosine_lr, param_groups
from .progress import Progress
from .runs import RunLock, check_out_folder


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, unusable resume state); the message says why."""


@dataclass
class TrainConfig:
    """Training settings (saved in the checkpoint; ``--resume`` reuses them)."""

    data: str | None = None  # a UTF-8 text file; None: the bundled Shakespeare corpus
    out: str = "out"
    max_iters: int = 1500
    seq_len: int = 128
    batch_size: int = 16  # windows per step and process: the global batch is P x batch_size
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
    how it stopped ("done" or "interrupted", by ``signum``), wall-clock seconds and train tokens per second."""

    step: int
    train_loss: float
    val_loss: float | None
    checkpoint: Path | None
    stopped: str  # "done", "interrupted"
    seconds: float
    tokens_per_second: float
    signum: int = signal.SIGINT  # what interrupted it: SIGINT (Ctrl-C) or SIGTERM
    val_bits_per_byte: float | None = None  # val_loss per byte of text, in bits: comparable across tokenizers


def _quiet(*args, **kwargs) -> None:
    pass


def _rng_states(model) -> list:
    return [m.rng.bit_generator.state for m in model.modules() if hasattr(m, "rng")]


def _set_rng_states(model, states: list) -> None:
    for m, s in zip([m for m in model.modules() if hasattr(m, "rng")], states):
        m.rng.bit_generator.state = s


def rank_streams(seed: int, rank: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The (batch, dropout) generators of one rank, from child ``rank`` of ``SeedSequence(seed).spawn(P)``.

    That child is the same for every P > rank, so rank 0 of a data-parallel run draws the windows of a
    single-process run, and ranks added on resume get streams no rank has used.
    """
    child = np.random.SeedSequence(seed).spawn(rank + 1)[rank]
    return tuple(np.random.default_rng(s) for s in child.spawn(2))


def _number(flag: str, value, low: float = 0.0, low_ok: bool = True, high: float | None = None) -> None:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and (value >= low if low_ok else value > low) and (high is None or value < high)):
        want = f"in [{low:g}, {high:g})" if high is not None else f"{'>=' if low_ok else '>'} {low:g}"
        raise ValueError(f"{flag} must be a finite number {want}, got {value!r}")


def check_settings(cfg: TrainConfig, model_cfg: HyenaConfig | None = None) -> None:
    """Reject settings the loop cannot run with, naming the command-line flag."""
    least = {"max_iters": 1, "seq_len": 1, "batch_size": 1, "eval_interval": 1, "eval_iters": 1, "warmup_iters": 0}
    for name, low in least.items():
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
    _number("--lr", cfg.lr, low_ok=False)
    _number("--min-lr", cfg.min_lr)
    if cfg.min_lr > cfg.lr:
        raise ValueError(f"--min-lr {cfg.min_lr:g} is above --lr {cfg.lr:g}: the schedule decays from --lr to --min-lr")
    _number("--weight-decay", cfg.weight_decay)
    _number("--grad-clip", cfg.grad_clip)  # 0: no clipping
    if model_cfg is not None:
        _number("--dropout", model_cfg.dropout, high=1.0)


def _prepared_folder(data: str, out: str) -> str:
    """``--data``: a folder made by ``minihyena prepare`` as it is, a text file through its cache."""
    return data if os.path.isdir(data) else str(cached_corpus(data, out))


def translation(data_tok, model_tok, data: str, source) -> np.ndarray | None:
    """Corpus ids -> the ids of a checkpoint's tokenizer (None when they number the same): a char corpus can
    train a char model whose vocabulary holds its characters; any other difference is refused."""
    if data_tok == model_tok:
        return None
    if isinstance(data_tok, CharTokenizer) and isinstance(model_tok, CharTokenizer):
        return model_tok.encode("".join(data_tok.chars), name=f"training text {data}").astype(np.int64)
    raise ValueError(f"--data {data} was tokenized with {data_tok!r}, but {source} uses {model_tok!r}: "
                     "prepare the text again with the checkpoint's tokenizer")


class Trainer:
    """Holds the model, optimiser, data and the state a checkpoint must capture to resume exactly.

    ``comm`` is the communicator of a data-parallel run; by default :func:`~minihyena.distributed.world`,
    which is a single process unless an MPI launcher started several. Rank 0 reads the text and the
    checkpoint and broadcasts them, every rank draws ``batch_size`` windows per step from its own stream
    (:func:`rank_streams`), and only rank 0 logs, shows progress and writes files.
    """

    def __init__(self, cfg: TrainConfig, model_cfg: HyenaConfig | None = None, resume: bool = False, log=print,
                 comm=None, force: bool = False, init_from=None):
        check_settings(cfg, model_cfg)
        if resume and init_from is not None:
            raise ValueError("--resume continues the run in --out; --init-from starts a new one: give one of them")
        self.cfg = cfg
        self.comm = comm = comm or world()
        self.log = log if comm.rank == 0 else _quiet
        self.out = Path(cfg.out)
        self.ckpt_path = self.out / "ckpt.npz"
        self.lock = RunLock(self.out)
        comm.run_on_root(lambda: check_out_folder(self.out, resume=resume, force=force))  # before any work
        self.backend = get_backend(cfg.backend)
        self.device_lines = comm.setup_device(self.backend)  # each rank's device; how gradients are averaged
        self.thread_note = limit_threads(comm)  # P ranks on one machine: a share of its cores each
        prepared = cfg.data is not None  # a file or a prepared folder, read from disk; else the bundled text
        if prepared:  # a text file is prepared once into a folder beside --out (rank 0; one error if it fails)
            folder = comm.run_on_root(_prepared_folder, cfg.data, cfg.out)
            corpus, text = PreparedCorpus(folder), None  # every rank maps the file itself
            self.data_note = None if folder == cfg.data else f"{cfg.data}: its tokens are read from {folder}"
        else:
            text, self.data_note = comm.run_on_root(load_bundled_corpus), None
        meta, source = None, self.ckpt_path if resume else init_from
        if source is not None:
            arrays, meta = comm.run_on_root(load_checkpoint, source)
            if resume and not is_resumable(arrays, meta):
                raise CheckpointError(
                    f"{source} holds weights only, no optimiser or training state (an imported or exported model), "
                    "so it cannot be resumed; start a new run from its weights with --init-from")
            try:
                tokenizer = tokenizer_from_dict(meta["tokenizer"])
                model_cfg = HyenaConfig.from_dict(meta["model_config"])
            except (KeyError, TypeError, ValueError) as exc:
                raise CheckpointError(f"{source} cannot be {'resumed' if resume else 'read'}: unusable header ({header_problem(exc)})") from None
            id_map = translation(corpus.tokenizer, tokenizer, cfg.data, source) if prepared else None
        else:
            tokenizer, id_map = corpus.tokenizer if prepared else CharTokenizer.from_text(text), None
            model_cfg = dataclasses.replace(model_cfg or HyenaConfig(), vocab_size=tokenizer.vocab_size)
            if model_cfg.l_max < cfg.seq_len:
                model_cfg = dataclasses.replace(model_cfg, l_max=cfg.seq_len)
        if cfg.seq_len > model_cfg.l_max:
            raise ValueError(f"--seq-len {cfg.seq_len} is longer than the model's l_max = {model_cfg.l_max}")
        self.tokenizer = tokenizer
        ids = corpus.ids if prepared else tokenizer.encode(text, name="the bundled corpus")
        self.data = TextDataset(ids, cfg.val_fraction, id_map)
        val = self.data.split("val")  # bits per byte = nats per token * tokens / bytes / ln 2
        self.bits_per_nat = len(val) / max(byte_count(val, corpus.tokenizer if prepared else tokenizer), 1) / math.log(2)
        for split in ("train", "val"):  # found now, not at the first evaluation minutes later
            have = len(self.data.split(split))
            if have < cfg.seq_len + 1:
                raise ValueError(f"the {'training' if split == 'train' else 'validation'} split of {cfg.data or 'the corpus'} "
                                 f"has {plural(have, 'token')}, too few for --seq-len {cfg.seq_len} (it needs "
                                 f"{cfg.seq_len + 1}); use a shorter --seq-len or more text")
        check_fits(training_bytes(model_cfg, cfg.batch_size, cfg.seq_len),
                   f"training a model of width {model_cfg.d_model}, {model_cfg.n_layer} layers, "
                   f"on batch {cfg.batch_size} x {cfg.seq_len}")
        self.model = HyenaLM(model_cfg, seed=cfg.seed).to(self.backend)
        self.opt = AdamW(
            param_groups(self.model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2)
        )
        self.rng, dropout_rng = rank_streams(cfg.seed, comm.rank)
        for m in self.model.modules():  # one dropout stream per rank, so ranks drop different units
            if hasattr(m, "rng"):
                m.rng = dropout_rng
        self.step = 0
        self.history: list[dict] = []
        self.saved_ranks: list[dict] = []  # random states of every rank that has trained this run
        self.saved_batch = (comm.size, cfg.batch_size)  # (processes, windows each) of the run being resumed
        if resume:
            self._restore(arrays, meta)
        elif meta is not None:  # --init-from: the weights, and nothing of the old run's training state
            self._load_weights(arrays, source)
        self.params = self.model.parameters()  # held: walking the modules for them costs about 0.25 ms a step
        comm.broadcast_parameters(self.params)  # identical copies, whatever each rank built

    # ------------------------------------------------------------------ checkpoint state
    def _restore(self, arrays: dict, meta: dict) -> None:
        try:
            self.model.load_state_dict(section(arrays, "model"))
            self.opt.load_state_dict(section(arrays, "optim"))
            state = meta["train_state"]
            self.step = int(state["step"])
            # one entry per rank; a checkpoint from before data parallelism has rank 0's only
            ranks = state.get("ranks") or [{"batches": state["rng"], "dropout": state["module_rngs"]}]
            if self.comm.rank < len(ranks):  # a rank new to this run keeps its fresh streams
                self.rng.bit_generator.state = ranks[self.comm.rank]["batches"]
                _set_rng_states(self.model, ranks[self.comm.rank]["dropout"])
            self.saved_ranks = ranks
            self.saved_batch = (int(state.get("world_size", 1)), int(meta["train_config"]["batch_size"]))
            self.history = state.get("history", [])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{self.ckpt_path} cannot be resumed: {exc}") from None

    def _load_weights(self, arrays: dict, source) -> None:
        try:
            self.model.load_state_dict(section(arrays, "model"))
        except ValueError as exc:
            raise CheckpointError(f"{source} does not match its own configuration: {exc}") from None

    def save(self) -> Path:
        """Write the checkpoint on rank 0. Every rank calls it: it gathers the ranks' random states."""
        ranks = self.comm.gather({"batches": self.rng.bit_generator.state, "dropout": _rng_states(self.model)})
        return self.comm.run_on_root(self._write_checkpoint, ranks)

    def _write_checkpoint(self, ranks: list[dict]) -> Path:
        ranks = ranks + self.saved_ranks[len(ranks):]  # keep the streams of ranks this run does not have
        arrays = {"model." + k: v for k, v in self.model.state_dict().items()}
        arrays.update({"optim." + k: v for k, v in self.opt.state_dict().items()})
        meta = {
            "model_config": self.model.config.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "train_config": dataclasses.asdict(self.cfg),
            "train_state": {"step": self.step, "world_size": self.comm.size, "ranks": ranks, "history": self.history},
        }
        return save_checkpoint(self.ckpt_path, arrays, meta, clean_stale=True)  # the lock makes this run the only writer

    def _write_history(self) -> None:
        atomic_write_text(self.out / "history.json", json.dumps(self.history))

    def _last_checkpoint(self) -> str:
        return str(self.ckpt_path) if self.ckpt_path.exists() else "(none saved yet)"

    # ------------------------------------------------------------------ steps
    def batch(self, split: str, rng):
        """Windows (x, y) of ``split``, on the host: the model checks the ids there, then copies them over."""
        return self.data.get_batch(split, self.cfg.batch_size, self.cfg.seq_len, rng)

    def train_step(self) -> float:
        """One optimiser step; returns the loss averaged over the ranks (the parameters are untouched if
        it is not finite). With P ranks this is one step on the global batch of P x batch_size windows."""
        cfg = self.cfg
        self.opt.lr = cosine_lr(self.step, cfg.lr, cfg.warmup_iters, cfg.max_iters, cfg.min_lr)
        x, y = self.batch("train", self.rng)
        loss = self.model.loss(x, y)
        value = self.comm.mean(loss.item())  # the same on every rank: all stop together on a NaN
        if not math.isfinite(value):
            raise TrainingError(
                f"loss became {value} at step {self.step}; stopped without updating. The last good checkpoint "
                f"is kept at {self._last_checkpoint()}. Try a lower --lr or --grad-clip."
            )
        clear_grads(self.params)  # model.zero_grad(), without walking the modules
        loss.backward()
        self.comm.average_gradients(self.params)  # one allreduce; clip the global batch's gradient
        norm = clip_grad_norm(self.params, cfg.grad_clip)
        if not math.isfinite(norm):
            raise TrainingError(
                f"the gradient norm became {norm} at step {self.step} (loss {value:.4f}); stopped without updating. "
                f"The last good checkpoint is kept at {self._last_checkpoint()}. Try a lower --lr or --grad-clip."
            )
        self.opt.step()
        self.step += 1
        return value

    def evaluate(self) -> float:
        """Mean validation loss over ``eval_iters`` batches: the same batches every time and for any number
        of ranks (rank r computes every P-th batch from r)."""
        cfg = self.cfg
        rng = np.random.default_rng(cfg.seed + 1_000_003)
        windows = [self.data.get_batch("val", cfg.batch_size, cfg.seq_len, rng) for _ in range(cfg.eval_iters)]
        self.model.eval()
        with no_grad():
            mine = windows[self.comm.rank::self.comm.size]
            total = sum(self.model.loss(x, y).item() for x, y in mine)
        self.model.train()
        return self.comm.sum(total) / cfg.eval_iters

    # ------------------------------------------------------------------ loop
    def run(self, progress: bool = True) -> TrainResult:
        """Train to ``max_iters`` (or a Ctrl-C), validating and saving every ``eval_interval`` steps, while
        holding the output folder's lock (:class:`~minihyena.runs.RunLock`) on rank 0."""
        self.comm.run_on_root(self.lock.acquire)
        try:
            return self._run(progress)
        finally:
            if self.comm.rank == 0:
                self.lock.release()

    def _run(self, progress: bool) -> TrainResult:
        cfg, comm = self.cfg, self.comm
        batch = f"batch {cfg.batch_size} x {cfg.seq_len}"
        if comm.size > 1:
            batch = f"{comm.size} processes x batch {cfg.batch_size} x {cfg.seq_len}"
        mc = self.model.config
        flops = train_step_flops(mc, comm.size * cfg.batch_size, cfg.seq_len)
        self.log(
            f"training on backend {self.backend.name!r}: {mc.mixer} model, {self.model.num_parameters():,} parameters, "
            f"{len(self.data.train):,} training tokens, vocab {self.tokenizer.vocab_size}, "
            f"steps {self.step}->{cfg.max_iters}, {batch}, {fmt_flops(flops)} per step"
        )
        for note in (self.data_note, self.thread_note):
            if note:
                self.log(note)
        for line in self.device_lines:
            self.log(line)
        was, now = self.saved_batch[0] * self.saved_batch[1], comm.size * cfg.batch_size
        if self.saved_batch[0] != comm.size and was != now:  # resumed on another number of processes
            keep = f"; --batch-size {was // comm.size} keeps it" if was % comm.size == 0 else ""
            self.log(f"note: the global batch changes from {was} windows ({self.saved_batch[0]} x {self.saved_batch[1]}) "
                     f"to {now} ({comm.size} x {cfg.batch_size}){keep}")
        interrupted = []
        stops = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and the polite stop of kill and job schedulers
        old_handlers = [signal.getsignal(s) for s in stops]

        def on_stop(signum, frame):  # finish the current step, then save and stop; a second one ends at once
            if interrupted:
                raise KeyboardInterrupt
            interrupted.append(signum)

        for s in stops:
            signal.signal(s, on_stop)
        bar = Progress(cfg.max_iters, start=self.step) if progress and comm.rank == 0 else None
        t0, tokens, loss, val = time.perf_counter(), 0, float("nan"), None
        try:
            # a Ctrl-C on any rank stops all of them after the same step
            while not (stopped := comm.any(bool(interrupted))) and self.step < cfg.max_iters:
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a non-finite loss or
                    loss = self.train_step()  # gradient stops the run with its own message, not NumPy warnings
                tokens += comm.size * cfg.batch_size * cfg.seq_len
                self.history.append({"step": self.step, "loss": loss})
                if bar:
                    rate = tokens / max(time.perf_counter() - t0, 1e-9)
                    bar.update(self.step, loss=f"{loss:.3f}", tok_s=f"{rate:,.0f}")
                if self.step % cfg.eval_interval == 0 or self.step == cfg.max_iters:
                    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                        val = self.evaluate()
                    if not math.isfinite(val):  # never replace a good checkpoint with a broken model
                        raise TrainingError(
                            f"validation loss became {val} at step {self.step}; not saved. The last good checkpoint "
                            f"is kept at {self._last_checkpoint()}."
                        )
                    self.history[-1].update(val_loss=val, val_bits_per_byte=val * self.bits_per_nat)
                    self.save()
                    comm.run_on_root(self._write_history)  # current after a kill too
                    (bar.write if bar else self.log)(f"step {self.step}: train loss {loss:.4f}, val loss {val:.4f} "
                                                      f"({val * self.bits_per_nat:.3f} bits per byte), saved {self.ckpt_path}")
        finally:
            for s, handler in zip(stops, old_handlers):
                signal.signal(s, handler)
            if bar:
                bar.close()
        seconds = time.perf_counter() - t0
        if stopped:
            self.save()
            how = "interrupted" if interrupted and interrupted[0] == signal.SIGINT else "stopped by SIGTERM"
            self.log(f"{how} at step {self.step}: checkpoint saved to {self.ckpt_path}; continue with --resume")
        comm.run_on_root(self._write_history)
        return TrainResult(self.step, loss, val, self.ckpt_path, "interrupted" if stopped else "done", seconds,
                           tokens / max(seconds, 1e-9), (interrupted or [signal.SIGINT])[0],
                           None if val is None else val * self.bits_per_nat)
