"""Plot and tabulate the JSON results of ``minihyena recall --json``.

One panel per (vocabulary, length): test accuracy against training seconds, one line per run
(colour: mixer and lr, one line per seed), with chance (1 / number of values) dashed and the
accuracy of answering the most frequent value in the sequence dotted. With
``--sweep``, a second figure of a learning-rate sweep: final accuracy and answer loss against lr.
With ``--solve ACC``, time to solve: the training seconds and steps each run needed to first
reach test accuracy ACC (a table per run, and a plot against the length, one panel per vocabulary).

    python benchmarks/recall_plot.py benchmarks/results/recall.json --out docs/assets/recall.png --table
    python benchmarks/recall_plot.py benchmarks/results/recall_lr_sweep*.json --sweep --out docs/assets/recall_lr_sweep.png
    python benchmarks/recall_plot.py benchmarks/results/recall_solve_*.json --solve 0.9 --out docs/assets/recall_solve.png
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from minihyena.data.synthetic import associative_recall, recall_vocab
from minihyena.recall import format_summary, summarize


def frequency_baseline(vocab: int, seq_len: int, seeds, test_size: int) -> float:
    """Test accuracy of answering the value seen most often in the sequence (no look-up), on the
    test sets that ``train_task`` draws for these seeds (seed + 12345)."""
    values = recall_vocab(vocab)["values"]
    hits = []
    for seed in seeds:
        x, y = associative_recall(test_size, seq_len, vocab, rng=np.random.default_rng(seed + 12345))
        counts = np.stack([(x[:, :-2] == v).sum(axis=1) for v in values], axis=1)  # (n, values)
        hits.append(values[counts.argmax(axis=1)] == y[:, -1])
    return float(np.concatenate(hits).mean())


def _label(run: dict, several_lrs: bool) -> str:
    return f"{run['mixer']}, lr {run['lr']:g}" if several_lrs else run["mixer"]


def plot_curves(data: dict, out: str) -> None:
    """Accuracy against training seconds, a panel per (vocabulary, length)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = data["runs"]
    panels = sorted({(r["vocab_size"], r["seq_len"]) for r in runs})
    groups = list(dict.fromkeys((r["mixer"], r["lr"]) for r in runs))  # colour per (mixer, lr), in run order
    several_lrs = len({lr for _, lr in groups}) > len({m for m, _ in groups})
    vocabs, lengths = sorted({v for v, _ in panels}), sorted({L for _, L in panels})
    fig, axes = plt.subplots(len(vocabs), len(lengths), figsize=(4.6 * len(lengths), 3.4 * len(vocabs)),
                             squeeze=False, sharey=True)
    clock = data["settings"].get("clock", "wall")
    for i, vocab in enumerate(vocabs):
        for j, L in enumerate(lengths):
            ax = axes[i][j]
            labelled = set()
            for r in (r for r in runs if (r["vocab_size"], r["seq_len"]) == (vocab, L)):
                colour = f"C{groups.index((r['mixer'], r['lr']))}"
                label = _label(r, several_lrs)
                seconds = [0.0] + [c["seconds"] for c in r["curve"]]
                acc = [0.0] + [c["accuracy"] for c in r["curve"]]
                ax.plot(seconds, acc, "o-", ms=2.5, lw=1.2, color=colour, alpha=0.85,
                        label=None if label in labelled else label)
                labelled.add(label)
            ax.axhline(1 / len(recall_vocab(vocab)["values"]), color="gray", ls="--", lw=1, label="chance")
            seeds = sorted({r["seed"] for r in runs if (r["vocab_size"], r["seq_len"]) == (vocab, L)})
            ax.axhline(frequency_baseline(vocab, L, seeds, data["settings"]["test_size"]), color="gray", ls=":", lw=1.2,
                       label="most frequent value")
            ax.set(title=f"vocabulary {vocab}, L = {L}", ylim=(0, 1.02),
                   xlabel=f"training seconds ({clock} clock)", ylabel="test accuracy" if j == 0 else None)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def plot_sweep(data: dict, out: str) -> None:
    """Final test accuracy and answer cross-entropy against the peak learning rate, per mixer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_a, ax_l) = plt.subplots(1, 2, figsize=(9, 3.3))
    for k, mixer in enumerate(dict.fromkeys(r["mixer"] for r in data["runs"])):
        rs = sorted((r for r in data["runs"] if r["mixer"] == mixer), key=lambda r: r["lr"])
        lrs = [r["lr"] for r in rs]
        ax_a.plot(lrs, [r["accuracy"] for r in rs], "o-", color=f"C{k}", label=mixer)
        ax_l.plot(lrs, [r["test_loss"] for r in rs], "o-", color=f"C{k}", label=mixer)
    r0 = data["runs"][0]
    ax_a.axhline(1 / len(recall_vocab(r0["vocab_size"])["values"]), color="gray", ls="--", lw=1, label="chance")
    limit = data["settings"]["time_limit"]
    title = f"vocabulary {r0['vocab_size']}, L = {r0['seq_len']}" + (f", {limit:g} s each" if limit else "")
    ax_a.set(xscale="log", xlabel="peak learning rate", ylabel="final test accuracy", ylim=(0, 1.02), title=title)
    ax_l.set(xscale="log", xlabel="peak learning rate", ylabel="answer cross-entropy (nats)", title="test loss")
    for ax in (ax_a, ax_l):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def first_reach(run: dict, acc: float) -> dict | None:
    """The first evaluation of ``run`` at test accuracy >= ``acc`` (its step and seconds), or None."""
    return next((c for c in run["curve"] if c["accuracy"] >= acc), None)


def solve_table(runs: list[dict], acc: float) -> str:
    """Markdown, six columns: per (vocabulary, length, mixer, lr), how many seeds reached ``acc``, when
    (training seconds and steps, per seed), how long each trained, and its final accuracy."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["vocab_size"], r["seq_len"], r["mixer"], r["lr"]), []).append(r)
    pct = f"{100 * acc:g}%"
    lines = [f"| vocab, L | mixer, lr | seeds at {pct} | to {pct}: seconds (steps) | trained: seconds (steps) "
             "| final accuracy |", "|---|---|---:|---:|---:|---:|"]
    for (vocab, L, mixer, lr), rs in sorted(groups.items(), key=lambda kv: kv[0][:2]):  # mixers in run order
        hits = [first_reach(r, acc) for r in rs]
        reach = ", ".join(f"{h['seconds']:,.0f} ({h['step']:,})" if h else "-" for h in hits)
        budget = ", ".join(f"{r['seconds']:,.0f} ({r['steps']:,})" for r in rs)
        final = ", ".join(f"{100 * r['accuracy']:.1f}%" for r in rs)
        lines.append(f"| {vocab}, {L} | {mixer}, {lr:g} | {sum(h is not None for h in hits)} of {len(rs)} "
                     f"| {reach} | {budget} | {final} |")
    return "\n".join(lines)


def plot_solve(data: dict, out: str, acc: float) -> None:
    """Training seconds to first reach ``acc`` against the length, a panel per vocabulary: one point
    per run (filled: reached, open at its budget: did not), the median over seeds joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = data["runs"]
    vocabs = sorted({r["vocab_size"] for r in runs})
    mixers = list(dict.fromkeys(r["mixer"] for r in runs))
    fig, axes = plt.subplots(1, len(vocabs), figsize=(4.8 * len(vocabs), 3.6), squeeze=False, sharey=True)
    clock = data["settings"].get("clock", "wall")
    for ax, vocab in zip(axes[0], vocabs):
        for k, mixer in enumerate(mixers):
            mine = [r for r in runs if r["vocab_size"] == vocab and r["mixer"] == mixer]
            lengths = sorted({r["seq_len"] for r in mine})
            medians = []
            for L in lengths:
                times = []
                for r in (r for r in mine if r["seq_len"] == L):
                    hit = first_reach(r, acc)
                    t = hit["seconds"] if hit else r["seconds"]
                    times.append(t if hit else float("inf"))
                    x = L * (1 + 0.05 * (k - (len(mixers) - 1) / 2))  # mixers side by side, not on top
                    ax.plot(x, t, "o" if hit else "^", color=f"C{k}", mfc=f"C{k}" if hit else "none", ms=6)
                med = float(np.median(times))
                medians.append(med if np.isfinite(med) else np.nan)
            ax.plot(lengths, medians, "-", color=f"C{k}", label=f"{mixer} (median)")
        ax.plot([], [], "^", color="gray", mfc="none", label=f"not at {100 * acc:g}% within its budget (plotted at it)")
        cap = data["settings"].get("time_limit")
        if cap:
            ax.axhline(cap, color="gray", ls=":", lw=1, label=f"budget: {cap:g} s")
        ax.set(xscale="log", yscale="log", title=f"vocabulary {vocab}", xlabel="sequence length L",
               ylabel=f"training seconds to {100 * acc:g}% ({clock} clock)")
        ax.set_xticks(sorted({r["seq_len"] for r in runs}), [str(L) for L in sorted({r["seq_len"] for r in runs})])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))  # room for the legend below the panels
    fig.savefig(out, dpi=110)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="JSON written by minihyena recall --json (several: their runs together)")
    p.add_argument("--out", default=None, help="PNG to write")
    p.add_argument("--sweep", action="store_true", help="plot a learning-rate sweep instead of the curves")
    p.add_argument("--table", action="store_true", help="print the Markdown summary table (mean ± sd over seeds)")
    p.add_argument("--solve", type=float, default=None, metavar="ACC",
                   help="time to solve: when each run first reached test accuracy ACC (table, and plot with --out)")
    args = p.parse_args(argv)
    data = None
    for path in args.results:
        with open(path) as f:
            part = json.load(f)
        data = part if data is None else {**data, "runs": data["runs"] + part["runs"]}  # settings: the first file's
    if args.solve is not None:
        print(solve_table(data["runs"], args.solve))
        if args.out:
            plot_solve(data, args.out, args.solve)
    elif args.out:
        (plot_sweep if args.sweep else plot_curves)(data, args.out)
    if args.out:
        print(f"wrote {args.out}")
    if args.table:
        print(format_summary(summarize(data["runs"])))
        print("\n| vocab | L | chance | most frequent value (test sets of these seeds) |\n|---:|---:|---:|---:|")
        for vocab, L in sorted({(r["vocab_size"], r["seq_len"]) for r in data["runs"]}):
            seeds = sorted({r["seed"] for r in data["runs"] if (r["vocab_size"], r["seq_len"]) == (vocab, L)})
            base = frequency_baseline(vocab, L, seeds, data["settings"]["test_size"])
            print(f"| {vocab} | {L} | {100 / len(recall_vocab(vocab)['values']):.1f}% | {100 * base:.1f}% |")


if __name__ == "__main__":
    main()
