"""Command line: ``minihyena train | sample | recall | demo | import-weights | export-weights``
(also ``python -m minihyena ...``).

Errors the user can fix (a bad path, a corrupt checkpoint, an unknown backend, a prompt with
unknown characters) print one line and exit with status 2; Ctrl-C exits with status 130 (training
saves a checkpoint first). Set ``MINIHYENA_DEBUG=1`` for the traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from .argtypes import COUNT, NON_NEGATIVE, POSITIVE, SEED, Parser, UsageError, choice, flag_names, integer, number, path
from .nn.model import MIXERS

# Settable from the command line: dest -> (flag, type, help). Defaults come from TrainConfig.
_TRAIN_FLAGS = {
    "data": ("--data", path, "UTF-8 text file to train on (prepared once into .minihyena-data/ beside --out), or a "
                             "folder made by minihyena prepare (default: the bundled Shakespeare corpus)"),
    "out": ("--out", path, "folder for the checkpoint and history (default: out)"),
    "max_iters": ("--max-iters", COUNT, "total optimiser steps"),
    "seq_len": ("--seq-len", COUNT, "tokens (characters with the default tokenizer) per training window"),
    "batch_size": ("--batch-size", COUNT, "windows per step and process (global batch: processes x this)"),
    "lr": ("--lr", POSITIVE, "peak learning rate (> 0)"),
    "min_lr": ("--min-lr", number(0.0), "final learning rate of the cosine schedule (>= 0)"),
    "warmup_iters": ("--warmup-iters", NON_NEGATIVE, "linear warm-up steps"),
    "weight_decay": ("--weight-decay", number(0.0), "decoupled weight decay of matrices and embeddings (>= 0)"),
    "grad_clip": ("--grad-clip", number(0.0), "global gradient-norm clip (0: off)"),
    "eval_interval": ("--eval-interval", COUNT, "validate and save every this many steps"),
    "eval_iters": ("--eval-iters", COUNT, "validation batches per evaluation"),
    "seed": ("--seed", SEED, "seed of initialisation and batches (>= 0)"),
    "backend": ("--backend", str, "numpy, numba, cupy or auto (default: MINIHYENA_BACKEND or numpy)"),
}
_MODEL_FLAGS = {
    "d_model": ("--d-model", COUNT, "model width"),
    "n_layer": ("--n-layer", COUNT, "number of blocks"),
    "order": ("--order", integer(2), "Hyena order N >= 2 (N gates, N-1 long convolutions)"),
    "filter_order": ("--filter-order", COUNT, "width of the implicit filter network"),
    "filter_w": ("--filter-w", POSITIVE, "initial frequency of the filter network's sine (> 0)"),
    "mlp_ratio": ("--mlp-ratio", COUNT, "MLP hidden width / model width"),
    "dropout": ("--dropout", number(0.0, 1.0, high_ok=False), "dropout probability, in [0, 1)"),
    "mixer": ("--mixer", choice(tuple(MIXERS)), "sequence mixer: hyena (default), attention-rope or attention (a GPT "
              "with rotary or learned positions; everything else is shared), hyena-nogate, hyena-explicit"),
    "n_head": ("--n-head", COUNT, "attention heads (attention mixers; must divide --d-model)"),
}


def _threads(backend, show: bool = True, stream=None) -> None:
    """Choose the thread pools for ``backend`` before any kernel runs, and say what was chosen (if anything)."""
    from .backends import keep_freed_memory
    from .backends.threads import UNCHANGED, configure_threads

    keep_freed_memory()  # no page faults on each step's arrays (see minihyena.backends.allocator)
    line = configure_threads(backend)
    if show and not line.endswith(UNCHANGED):
        print(line, file=stream or sys.stdout, flush=True)


def _model_config(cls, given: dict):
    """The model configuration of the flags; a value it refuses is named by its flag (``--n-head``)."""
    try:
        return cls(**given)
    except (TypeError, ValueError) as exc:
        raise flag_names(exc, {dest: flag for dest, (flag, _, _) in _MODEL_FLAGS.items()}) from None


def _train(args) -> int:
    from .checkpoint import load_checkpoint
    from .distributed import stop_on_error, world
    from .generate import generate
    from .nn.model import HyenaConfig
    from .runs import check_out_folder
    from .train import TrainConfig, Trainer, check_settings

    given = {k: getattr(args, k) for k in _TRAIN_FLAGS if getattr(args, k) is not None}
    model_given = {k: getattr(args, k) for k in _MODEL_FLAGS if getattr(args, k) is not None}
    comm = None
    try:
        model_cfg = _model_config(HyenaConfig, model_given)
        check_settings(TrainConfig(**given), model_cfg)  # bad flags: one line, before anything runs
        comm = world()  # one process, unless an MPI launcher (mpiexec -n P, srun) started several
        if args.init_from and model_given:
            raise ValueError(f"--init-from keeps the saved model; drop {', '.join(_MODEL_FLAGS[k][0] for k in model_given)}")
        if args.resume:
            out = given.get("out", TrainConfig.out)
            comm.run_on_root(lambda: check_out_folder(out, resume=True))
            meta = comm.run_on_root(lambda: load_checkpoint(os.path.join(out, "ckpt.npz"))[1])
            if model_given:
                raise ValueError(f"--resume keeps the saved model; drop {', '.join(_MODEL_FLAGS[k][0] for k in model_given)}")
            saved = {k: v for k, v in meta.get("train_config", {}).items() if k in {f.name for f in dataclasses.fields(TrainConfig)}}
            cfg = TrainConfig(**{**saved, **given})
            _threads(cfg.backend, comm.rank == 0)
            trainer = Trainer(cfg, resume=True, comm=comm, init_from=args.init_from)
        else:
            cfg = TrainConfig(**given)
            _threads(cfg.backend, comm.rank == 0)
            trainer = Trainer(cfg, model_cfg, comm=comm, force=args.force, init_from=args.init_from)
        prompt = trainer.tokenizer.encode(args.prompt or trainer.tokenizer.default_prompt(), name="prompt")  # check it now
        result = trainer.run(progress=not args.no_progress)
    except Exception as exc:
        return stop_on_error(comm, exc)  # raises it for main's one-line message, on one rank only
    if result.stopped == "interrupted":
        return 128 + int(result.signum)  # 130 after Ctrl-C, 143 after SIGTERM, as the shell reports them
    if comm.rank != 0:
        return 0
    val = ("not measured (no steps left to run)" if result.val_loss is None else
           f"{result.val_loss:.4f} ({result.val_bits_per_byte:.3f} bits per byte)")
    print(f"finished {result.step} steps in {result.seconds:.0f} s ({result.tokens_per_second:,.0f} tokens/s); "
          f"validation loss {val}; checkpoint {result.checkpoint}")
    if args.sample_tokens > 0:
        ids = generate(trainer.model, prompt, args.sample_tokens, temperature=0.8, top_k=None, seed=cfg.seed,
                       vocab_limit=trainer.tokenizer.vocab_size)
        print("\n--- sample ---")
        print(trainer.tokenizer.decode(ids))
    return 0


def _sample(args) -> int:
    from .checkpoint import load_model
    from .data.text import CharTokenizer
    from .generate import check_sampling, generate, refill_length
    from .messages import plural
    from .progress import Progress

    check_sampling(args.max_new_tokens, args.temperature, args.top_k)
    model, tokenizer, _ = load_model(args.checkpoint, backend=args.backend)
    _threads(args.backend, stream=sys.stderr)  # before the first kernel runs; stdout carries the text
    prompt = args.prompt if args.prompt else tokenizer.default_prompt()
    ids = tokenizer.encode(prompt, name="prompt")
    l_max = model.config.l_max
    if len(ids) + args.max_new_tokens > l_max:
        unit = "character" if isinstance(tokenizer, CharTokenizer) else "token"
        window = (f"the last {l_max} {unit}s" if args.no_cache else
                  f"the most recent {refill_length(l_max)} to {l_max} {unit}s (the cache is refilled as it fills up)")
        print(f"minihyena: note: the prompt and {plural(args.max_new_tokens, 'new ' + unit)} are more than the "
              f"model's l_max = {l_max}; each new {unit} is predicted from {window}", file=sys.stderr)
    if len(ids) > l_max:
        ids = ids[-l_max:]
    # Stream the text as it is drawn; when stdout is not a terminal, show progress on stderr instead.
    _write(prompt)
    progress = None
    if not sys.stdout.isatty() and sys.stderr.isatty() and args.max_new_tokens >= 200:
        progress = Progress(args.max_new_tokens)
    drawn, decode = 0, tokenizer.decoder()  # a byte tokenizer's character may span several ids

    def show(token: int) -> None:
        nonlocal drawn
        drawn += 1
        _write(decode([token]))
        if progress is not None:
            progress.update(drawn)

    try:
        generate(model, ids, args.max_new_tokens, args.temperature, args.top_k, seed=args.seed,
                 cache=not args.no_cache, on_token=show, vocab_limit=tokenizer.vocab_size)
    finally:
        if progress is not None:
            progress.close()
        try:
            _write("\n")
        except (OSError, ValueError):  # already failing: the first error is the one to report
            pass
    return 0


def _write(text: str) -> None:
    """Write sampled text to stdout now; a stdout that cannot take it is an error that says so."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except UnicodeEncodeError as exc:
        raise ValueError(f"standard output ({sys.stdout.encoding}) cannot show the character {exc.object[exc.start]!r}; "
                         "use a UTF-8 terminal or set PYTHONIOENCODING=utf-8") from None
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OSError(f"cannot write the sample to standard output: {exc.strerror or exc}") from None


def _demo(args) -> int:
    """Causal FFT convolution against the direct sum, and its backward against finite differences."""
    import numpy as np

    from . import Tensor, functional as F
    from .testing import gradcheck

    rng = np.random.default_rng(args.seed)
    B, D, L = 2, 4, args.length
    u, k, skip = rng.standard_normal((B, D, L)), rng.standard_normal((D, L)), rng.standard_normal(D)
    y = F.fftconv(Tensor(u), Tensor(k), Tensor(skip)).numpy()
    direct = skip[:, None] * u
    for t in range(L):
        direct[..., t] += (k[:, : t + 1][None] * u[..., t::-1]).sum(-1)
    err = float(np.abs(y - direct).max())
    print(f"fftconv vs direct O(L^2) sum, B={B} D={D} L={L}: max abs difference {err:.2e}")
    gradcheck(F.fftconv, [Tensor(a, dtype=np.float64, requires_grad=True) for a in (u, k, skip)], name="fftconv")
    print("fftconv backward vs central differences (u, k, skip): gradient check passed")
    return 0 if err < 1e-9 else 1


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="minihyena", description="Hyena language models from scratch in NumPy.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a Hyena LM (or a GPT) on text, then print a sample")
    for dest, (flag, typ, text) in {**_TRAIN_FLAGS, **_MODEL_FLAGS}.items():
        t.add_argument(flag, dest=dest, type=typ, default=None, help=text)
    t.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    t.add_argument("--force", action="store_true",
                   help="start a new run in an --out that holds one (its checkpoint is replaced at the first save)")
    t.add_argument("--init-from", type=path, default=None, metavar="CKPT",
                   help="start a new run from the weights (and tokenizer) of this checkpoint, e.g. to fine-tune an "
                        "imported or finished model on new text; the optimiser starts fresh")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--sample-tokens", type=NON_NEGATIVE, default=300, help="tokens to sample at the end (0: none)")
    t.add_argument("--prompt", default="", help="prompt of the final sample")
    t.set_defaults(func=_train)

    s = sub.add_parser("sample", help="continue a prompt with a trained model")
    s.add_argument("--checkpoint", type=path, default="out/ckpt.npz", help="checkpoint file or its folder")
    s.add_argument("--prompt", default="", help="text to continue")
    s.add_argument("--max-new-tokens", type=NON_NEGATIVE, default=500)
    s.add_argument("--temperature", type=number(0.0), default=0.8, help="0 = greedy")
    s.add_argument("--top-k", type=COUNT, default=None)
    s.add_argument("--seed", type=SEED, default=None)
    s.add_argument("--backend", default=None)
    s.add_argument("--no-cache", action="store_true",
                   help="re-run the whole context for every token (the slow, readable reference) instead of cached decoding")
    s.set_defaults(func=_sample)

    from .prepare_command import add_prepare_command
    from .recall_command import add_recall_command

    add_prepare_command(sub)  # prepare: tokenize a corpus once, for training from disk

    add_recall_command(sub, _threads)  # recall: Hyena against attention on synthetic tasks

    d = sub.add_parser("demo", help="check the FFT convolution and its gradient")
    d.add_argument("--length", type=integer(1, 8192), default=64, help="L <= 8192 (the direct sum it checks is O(L^2))")
    d.add_argument("--seed", type=SEED, default=0)
    d.set_defaults(func=_demo)

    from .interop.commands import add_commands

    add_commands(sub)  # import-weights, export-weights: the reference PyTorch code's weights
    return p


def _error(message: str) -> None:
    """The one-line error, on stderr if there is one; under an MPI launcher, rank 0 alone says it (every
    rank parses the same flags and would print the same line)."""
    from .distributed import launcher

    if sys.stderr is not None and launcher()[1] == 0:
        print(f"minihyena: error: {' '.join(message.split())}", file=sys.stderr)


def _describe(exc: Exception) -> str:
    """An error's message; a system error with its file named (``No space left on device: out/ckpt.npz``)."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush raises nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _parse(argv):
    """Parse the command line; an unknown flag is reported with the help of the command it was given to."""
    parser = build_parser()
    try:
        return parser.parse_args(argv)
    except UsageError as exc:
        words = sys.argv[1:] if argv is None else list(argv)
        command = next((w for w in words if not w.startswith("-")), None)
        known = parser._subparsers._group_actions[0].choices if parser._subparsers else {}
        if command in known and str(exc).endswith("(see minihyena --help)"):
            raise UsageError(str(exc).replace("(see minihyena --help)", f"(see minihyena {command} --help)")) from None
        raise


def main(argv=None) -> int:
    from .backends import BackendUnavailableError
    from .checkpoint import CheckpointError
    from .data.tokenizers import ExtraMissing
    from .train import TrainingError

    if sys.stdout is None:  # started with stdout closed (>&-): nowhere to write results
        _error("standard output is closed; redirect it to a file or /dev/null instead of closing it")
        return 2
    try:
        args = _parse(argv)
        return args.func(args)
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as Unix tools do
        _silence_stdout()
        return 128 + 13  # the status of a process ended by SIGPIPE
    except (CheckpointError, BackendUnavailableError, TrainingError, ExtraMissing, OSError, ValueError, TypeError) as exc:
        if os.environ.get("MINIHYENA_DEBUG"):
            raise
        _error(_describe(exc))
        return 2
    except MemoryError as exc:
        if os.environ.get("MINIHYENA_DEBUG"):
            raise
        _error(f"out of memory: {exc}" if str(exc) else "out of memory")
        return 2
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (which saves and stops by itself)
        if os.environ.get("MINIHYENA_DEBUG"):
            raise
        print("minihyena: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
