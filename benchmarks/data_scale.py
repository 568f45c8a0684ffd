"""Corpora larger than memory: prepare throughput, time to the first step and peak memory, and bits per
byte of the char, byte and BPE tokenizers after equal CPU time.

    python benchmarks/data_scale.py --work /tmp/scale                  # 2 GB corpus, 300 CPU s per tokenizer
    python benchmarks/data_scale.py --work /tmp/q --size-mb 20 --train-seconds 5 --bpe 300   # a quick try

1. A corpus of ``--size-mb`` MB (the bundled text repeated) in ``--work``; ``minihyena prepare`` with
   ``char`` and ``byte`` on all of it, ``bpe:N`` on its first ``--bpe-mb`` MB: MB of text per wall second
   and peak resident memory of each process (``wait4``).
2. ``minihyena train --max-iters 1`` on the prepared ``char`` folder, and twice on the text file itself
   (the first run prepares its cache, the second reuses it): wall seconds from start to exit (imports, one step, one evaluation, one checkpoint), an
   upper bound of the time to the first step, and peak resident memory.
3. On the bundled corpus: the default model trained for ``--train-seconds`` CPU seconds with each tokenizer
   (the same width, depth, batch and context in tokens; only the vocabulary, and so the embedding,
   differs), then the validation loss on 32 fixed batches, in nats per token and bits per byte.

Results go to ``--json`` (default benchmarks/results/data_scale.json) and as Markdown tables to stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MINIHYENA = [sys.executable, "-m", "minihyena"]


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd``: (wall seconds, its own peak resident MB from ``wait4``, stdout); a failure stops here."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{err.read()}")
        return seconds, usage.ru_maxrss / 1024, out.read()  # ru_maxrss: kB on Linux


def make_corpus(path: Path, size_mb: int) -> Path:
    from minihyena.data import bundled_corpus_path

    if path.exists() and path.stat().st_size >= size_mb * 10**6:
        return path
    text = bundled_corpus_path().read_bytes()
    with open(path, "wb") as f:
        for _ in range(size_mb * 10**6 // len(text) + 1):
            f.write(text)
    return path


def prepare_runs(work: Path, corpus: Path, bpe: int, bpe_mb: int) -> list[dict]:
    rows = []
    head = work / f"head{bpe_mb}.txt"
    with open(corpus, "rb") as src, open(head, "wb") as dst:
        dst.write(src.read(bpe_mb * 10**6).rsplit(b"\n", 1)[0] + b"\n")
    for spec, source in (("char", corpus), ("byte", corpus), (f"bpe:{bpe}", head)):
        out = work / spec.replace(":", "")
        seconds, peak, _ = timed([*MINIHYENA, "prepare", "--data", str(source), "--out", str(out), "--tokenizer", spec,
                                  "--force", "--no-progress"])
        meta = json.loads((out / "meta.json").read_text())
        mb = source.stat().st_size / 1e6
        rows.append({"tokenizer": spec, "text_mb": round(mb, 1), "tokens": meta["tokens"], "seconds": round(seconds, 2),
                     "mb_per_s": round(mb / seconds, 1), "peak_rss_mb": round(peak, 1)})
        print(f"prepare {spec}: {mb:,.0f} MB in {seconds:.1f} s ({mb / seconds:.0f} MB/s), peak {peak:.0f} MB", flush=True)
    return rows


def first_step_runs(work: Path, corpus: Path) -> list[dict]:
    rows = []
    for label, data in (("prepared folder", work / "char"), ("text file, first run (prepares its cache)", corpus),
                        ("text file, cache reused", corpus)):
        run = work / "run"
        seconds, peak, _ = timed([*MINIHYENA, "train", "--data", str(data), "--out", str(run), "--force", "--max-iters", "1",
                                  "--eval-iters", "1", "--sample-tokens", "0", "--no-progress", "--backend", "numpy"])
        rows.append({"data": label, "seconds": round(seconds, 2), "peak_rss_mb": round(peak, 1)})
        print(f"train, first step, {label}: {seconds:.1f} s, peak {peak:.0f} MB", flush=True)
    return rows


def bits_per_byte_runs(work: Path, seconds: float, bpe: int, backend: str) -> list[dict]:
    from minihyena.data import bundled_corpus_path, prepare_corpus
    from minihyena.train import TrainConfig, Trainer

    rows = []
    for spec in ("char", "byte", f"bpe:{bpe}"):
        folder = work / f"bundled-{spec.replace(':', '')}"
        prepare_corpus([bundled_corpus_path()], folder, tokenizer=spec, force=True)
        cfg = TrainConfig(data=str(folder), out=str(work / f"bpb-{spec.replace(':', '')}"), backend=backend,
                          eval_iters=32, max_iters=10**9, warmup_iters=20)
        trainer = Trainer(cfg, force=True, log=lambda *a: None)
        steps, t0 = 0, time.process_time()
        while time.process_time() - t0 < seconds:
            trainer.train_step()
            steps += 1
        val = trainer.evaluate()
        row = {"tokenizer": spec, "vocab": trainer.tokenizer.vocab_size, "params": trainer.model.num_parameters(),
               "steps": steps, "val_nats_per_token": round(val, 4), "bits_per_byte": round(val * trainer.bits_per_nat, 4),
               "bytes_per_token": round(1 / (trainer.bits_per_nat * 0.6931471805599453), 3)}
        rows.append(row)
        print(f"{spec}: {steps} steps in {seconds:.0f} CPU s, val {val:.4f} nats/token = {row['bits_per_byte']:.3f} bits/byte",
              flush=True)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="folder for the corpus, the prepared folders and runs")
    p.add_argument("--size-mb", type=int, default=2000, help="corpus size for parts 1 and 2 (default 2000)")
    p.add_argument("--bpe", type=int, default=1024, help="BPE vocabulary (default 1024)")
    p.add_argument("--bpe-mb", type=int, default=100, help="MB of the corpus the bpe throughput is measured on")
    p.add_argument("--train-seconds", type=float, default=300.0, help="CPU seconds of training per tokenizer (part 3)")
    p.add_argument("--backend", default="numba", help="backend of part 3 (default numba)")
    p.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "data_scale.json")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    corpus = make_corpus(args.work / f"corpus{args.size_mb}.txt", args.size_mb)
    result = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "machine": {"cpus": os.cpu_count(), "platform": sys.platform}}
    result["prepare"] = prepare_runs(args.work, corpus, args.bpe, min(args.bpe_mb, args.size_mb))
    result["first_step"] = first_step_runs(args.work, corpus)
    result["bits_per_byte"] = bits_per_byte_runs(args.work, args.train_seconds, args.bpe, args.backend)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print("\n| tokenizer | text (MB) | tokens | seconds | MB/s | peak RSS (MB) |\n|---|---:|---:|---:|---:|---:|")
    for r in result["prepare"]:
        print(f"| {r['tokenizer']} | {r['text_mb']:,} | {r['tokens']:,} | {r['seconds']} | {r['mb_per_s']} | {r['peak_rss_mb']:.0f} |")
    print("\n| train --data | seconds to exit after one step | peak RSS (MB) |\n|---|---:|---:|")
    for r in result["first_step"]:
        print(f"| {r['data']} | {r['seconds']} | {r['peak_rss_mb']:.0f} |")
    print(f"\n| tokenizer | vocabulary | parameters | bytes per token | steps in {args.train_seconds:g} CPU s "
          "| val loss (nats/token) | bits per byte |\n|---|---:|---:|---:|---:|---:|---:|")
    for r in result["bits_per_byte"]:
        print(f"| {r['tokenizer']} | {r['vocab']:,} | {r['params']:,} | {r['bytes_per_token']} | {r['steps']} "
              f"| {r['val_nats_per_token']} | {r['bits_per_byte']} |")
    first = {r["tokenizer"]: r for r in result["prepare"]}
    print(f"\ndata_scale: prepare char {first['char']['mb_per_s']} MB/s, byte {first['byte']['mb_per_s']} MB/s; "
          f"first step on {args.size_mb} MB prepared: {result['first_step'][0]['seconds']} s, "
          f"{result['first_step'][0]['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
