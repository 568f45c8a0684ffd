"""``minihyena recall``: train small models on associative recall (or induction) and compare mixers.

Everything is checked before the first model trains: the sizes (named by their flags), the memory one
model needs, and the ``--json`` file, which replaces an existing file only with ``--force`` (and never
a run's training checkpoint, a folder or a device).
"""
from __future__ import annotations

import dataclasses
import os
import platform
from pathlib import Path

from .argtypes import COUNT, NON_NEGATIVE, POSITIVE, SEED, flag_names, number, path

#: TaskConfig and HyenaConfig fields, named as the flags that set them.
_FLAGS = {"vocab_size": "--vocab", "seq_len": "--seq-len", "d_model": "--d-model", "n_layer": "--n-layer",
          "n_head": "--n-head", "mlp_ratio": "--mlp-ratio", "batch_size": "--batch-size", "warmup_iters": "--warmup",
          "max_steps": "--max-steps", "eval_every": "--eval-every", "test_size": "--test-size",
          "time_limit": "--time-limit"}


def check_json(json_path: Path, force: bool) -> None:
    """The results file: a new file in an existing folder, or an existing regular file with ``--force``."""
    from .fileio import special
    from .interop.paths import describe

    kind = special(json_path)
    if kind:
        raise ValueError(f"--json {json_path} is {kind}, not a file to write")
    if not json_path.parent.is_dir():
        raise ValueError(f"--json {json_path}: the folder {json_path.parent} does not exist")
    if json_path.exists():
        if describe(json_path).endswith("checkpoint"):
            raise ValueError(f"--json {json_path} is a minihyena checkpoint: recall never replaces one, even with --force")
        if not force:
            raise ValueError(f"--json {json_path} already exists: pass --force to replace it, or choose another file")


def _recall(args, threads) -> int:
    from .backends import get_backend
    from .memory import check_fits, training_bytes
    from .nn.model import HyenaConfig, check_mixer
    from .recall import TaskConfig, format_summary, parse_lrs, run_grid, save_results, summarize

    for mixer in args.mixers:  # everything is checked before any training starts
        check_mixer(mixer)
    lrs = parse_lrs(args.lr, args.mixers)
    if len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds: each seed once, got {args.seeds}")
    json_path = Path(args.json) if args.json else None
    if json_path is not None:
        check_json(json_path, args.force)
    try:
        for seq_len in args.seq_len:  # memory first: TaskConfig draws an example of each size to check it
            for mixer in args.mixers:
                model = HyenaConfig(vocab_size=max(args.vocab), d_model=args.d_model, n_layer=args.n_layer,
                                    l_max=seq_len, mixer=mixer, n_head=args.n_head,
                                    mlp_ratio=args.mlp_ratio)
                check_fits(training_bytes(model, args.batch_size, seq_len),
                           f"{mixer} at --seq-len {seq_len}, --batch-size {args.batch_size}")
        cfg = TaskConfig(
            task=args.task, vocab_size=args.vocab[0], seq_len=args.seq_len[0], d_model=args.d_model,
            n_layer=args.n_layer, n_head=args.n_head, mlp_ratio=args.mlp_ratio, batch_size=args.batch_size,
            warmup_iters=args.warmup,
            max_steps=args.max_steps, time_limit=args.time_limit, clock=args.clock, eval_every=args.eval_every,
            test_size=args.test_size, target=args.target, seed=args.seeds[0], backend=args.backend,
        )
        for vocab in args.vocab:
            for seq_len in args.seq_len:
                dataclasses.replace(cfg, vocab_size=vocab, seq_len=seq_len)  # a bad size: now, not hours later
    except (TypeError, ValueError) as exc:
        raise flag_names(exc, _FLAGS) from None
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("vocab_size", "seq_len", "lr", "seed")}
    settings["backend"] = get_backend(args.backend).name
    threads(args.backend)  # before the first kernel runs
    meta = {
        "arguments": {k: v for k, v in vars(args).items() if k != "func"}, "settings": settings,
        "vocab": args.vocab, "seq_len": args.seq_len, "lr": lrs, "seeds": args.seeds,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}},
    }

    def save(runs):
        if json_path is not None:
            save_results(json_path, {**meta, "runs": runs, "summary": summarize(runs)})

    runs = run_grid(cfg, args.vocab, args.seq_len, lrs, args.seeds, log=None if args.quiet else print,
                    announce=lambda line: print(line, flush=True), on_run=save)
    limit = f"time limit {args.time_limit:g} s ({args.clock} clock)" if args.time_limit else "no time limit"
    print(f"\n{args.task}: {args.n_layer} layers, width {args.d_model}, backend {settings['backend']}, "
          f"at most {args.max_steps} steps, {limit} per model\n")
    print(format_summary(summarize(runs)))
    if json_path is not None:
        print(f"\nresults: {json_path}")
    return 0


def add_recall_command(sub, threads) -> None:
    """The ``recall`` subcommand; ``threads(backend)`` chooses the thread pools before training."""
    r = sub.add_parser("recall", help="train small models on associative recall and compare mixers")
    r.add_argument("--task", default="recall", choices=["recall", "induction"])
    r.add_argument("--vocab", type=COUNT, nargs="+", default=[10], help="vocabulary sizes")
    r.add_argument("--seq-len", type=COUNT, nargs="+", default=[256], help="sequence lengths")
    r.add_argument("--mixers", nargs="+", default=["hyena", "attention", "hyena-nogate", "hyena-explicit"])
    r.add_argument("--d-model", type=COUNT, default=64)
    r.add_argument("--n-layer", type=COUNT, default=2)
    r.add_argument("--n-head", type=COUNT, default=4, help="attention heads (attention mixers; must divide --d-model)")
    r.add_argument("--mlp-ratio", type=COUNT, default=4, help="MLP width as a multiple of --d-model")
    r.add_argument("--batch-size", type=COUNT, default=32)
    r.add_argument("--lr", nargs="+", default=None, metavar="[MIXER=]LR[,LR...]",
                   help="peak learning rates: for every mixer, or per mixer (e.g. 3e-3 attention-rope=1e-3); "
                        "several values: a sweep (default 3e-3)")
    r.add_argument("--warmup", type=NON_NEGATIVE, default=50, help="linear warm-up steps")
    r.add_argument("--max-steps", type=COUNT, default=2000)
    r.add_argument("--time-limit", type=POSITIVE, default=None, help="seconds of training per model (evaluation not counted)")
    r.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="what --time-limit counts: wall seconds, or this process's CPU seconds (steadier on a shared machine)")
    r.add_argument("--eval-every", type=COUNT, default=100)
    r.add_argument("--test-size", type=COUNT, default=256, help="test examples (scored on the answer)")
    r.add_argument("--target", type=number(0.0, 1.0, low_ok=False), default=0.99,
                   help="stop a model once its test accuracy reaches this")
    r.add_argument("--seeds", "--seed", dest="seeds", type=SEED, nargs="+", default=[0],
                   help="seeds of initialisation and data; several: mean and spread over them")
    r.add_argument("--json", type=path, default=None, metavar="PATH", help="write settings, every run and its accuracy curve here")
    r.add_argument("--force", action="store_true", help="replace an existing --json file")
    r.add_argument("--backend", default=None)
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=lambda args: _recall(args, threads))
