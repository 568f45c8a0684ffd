"""The docs page "Hyena against a Transformer on text" and its plots, made from lm_compare's JSON.

    python benchmarks/lm_compare_report.py benchmarks/results/lm_compare.json   # rewrite the page and plots

The reading on the page is derived from the numbers (who is ahead at equal time, at equal tokens, and
in FLOPs to the GPT's final loss), so it says where the GPT wins as plainly as where Hyena does.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

NAMES = {"hyena": "Hyena", "gpt": "GPT"}
COLOURS = {"hyena": "tab:blue", "gpt": "tab:orange"}


def plot(result: dict, key: str, path: Path, xlabel: str, scale: float = 1.0) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    contexts = result["setup"]["contexts"]
    fig, axes = plt.subplots(1, len(contexts), figsize=(4.2 * len(contexts), 3.4), sharey=True)
    for ax, ctx in zip(axes, contexts):
        for run in (r for r in result["runs"] if r["context"] == ctx):
            xs = [c[key] / scale for c in run["curve"]]
            ys = [c["val_loss"] for c in run["curve"]]
            label = f"{NAMES[run['model']]} (seed {run['seed']})"
            ax.plot(xs, ys, color=COLOURS[run["model"]], alpha=0.9 if run["seed"] == 1 else 0.55, label=label)
        ax.set_title(f"context {ctx}")
        ax.set_xlabel(xlabel)
        ax.set_ylim(top=min(3.5, ax.get_ylim()[1]))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation loss (nats / char)")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reading(rows: list[dict]) -> list[str]:
    """Plain sentences, one per context, from the summary rows."""
    out = []
    for r in rows:
        h, g = r["hyena_time"], r["gpt_time"]
        lead = "Hyena" if h < g else "the GPT"
        s = (f"- **Context {r['context']}.** At equal CPU time {lead} is ahead ({h:.3f} against {g:.3f}); "
             f"at equal tokens ({r['equal_tokens'] / 1e6:.2f} M) Hyena {r['hyena_tokens']:.3f}, the GPT {r['gpt_tokens']:.3f}")
        if r["flops_ratio"] is None:
            s += "; Hyena does not reach the GPT's final loss within its budget."
        else:
            s += (f"; Hyena reaches the GPT's final loss with {r['flops_ratio']:.2f}x its FLOPs "
                  f"({'fewer' if r['flops_ratio'] < 1 else 'more'}) and in {r['hyena_reach_cpu_s']:.0f} of "
                  f"{r['gpt_reach_cpu_s']:.0f} CPU seconds.")
        out.append(s)
    return out


def edge_note(result: dict) -> str:
    """Say so when a model's best learning rate is at the edge of the sweep (a wider sweep could move it)."""
    lrs = result["setup"]["lrs"]
    edge = [f"{NAMES[m]}'s ({v:g}, the {'largest' if v == max(lrs) else 'smallest'} value swept)"
            for m, v in result["best_lr"].items() if v in (min(lrs), max(lrs))]
    if not edge:
        return ""
    return (f"The best learning rate is at the edge of the sweep for {' and '.join(edge)}, so a wider sweep "
            "could move it further, in that model's favour.\n")


def verdict(rows: list[dict]) -> str:
    """Who wins where, said plainly, including where the GPT wins."""
    gpt_wins = [r["context"] for r in rows if r["gpt_time"] < r["hyena_time"] or r["gpt_tokens"] < r["hyena_tokens"]]
    if gpt_wins:
        return (f"The GPT is ahead at context {', '.join(map(str, gpt_wins))} (at equal time or at equal tokens); "
                "Hyena elsewhere.")
    return ("In this setting the GPT is ahead nowhere: at every context Hyena has the lower loss at equal time "
            "and at equal tokens, and it reaches the GPT's final loss with a fraction of its FLOPs.")


def page(result: dict) -> str:
    from lm_compare import table

    s, rows = result["setup"], result["summary"]
    lr = result["best_lr"]
    sweep = "\n".join(f"| {NAMES[m]} | " + " | ".join(
        f"{next(r['curve'][-1]['val_loss'] for r in result['sweep'] if r['model'] == m and r['lr'] == v):.3f}"
        for v in s["lrs"]) + " |" for m in NAMES)
    return f"""# Hyena against a Transformer on text

The paper's central claim is that Hyena reaches a Transformer's language-modelling quality with less
compute, and that its advantage grows with the context, since attention costs $O(L^2)$ and Hyena
$O(L \\log L)$. This page tests that claim on a laptop-sized scale: the same text, the same budget,
models of equal size. It is made by `benchmarks/lm_compare.py --write-docs`; the numbers are in
`benchmarks/results/lm_compare.json`.

## Setup

- **Models.** Width {s['d_model']}, {s['n_layer']} layers, MLP ratio {s['mlp_ratio']}, pre-LN blocks, tied
  head: one `HyenaLM` class, in which only the mixer differs. Hyena is of order 2 with a filter network of
  width {s['filter_order']}. The GPT has {s['n_head']} rotary attention heads (`--mixer attention-rope`),
  computed in tiles (see [Attention in tiles](concepts/attention.md)). Their parameter counts are within 5%.
- **Data.** The bundled Shakespeare corpus, as characters. The last 10% is held out, and both models are
  validated on the same held-out windows ({s['eval_tokens']:,} tokens per evaluation).
- **Contexts.** {', '.join(map(str, s['contexts']))}, each with {s['tokens_per_step']:,} tokens per step (batch
  {', '.join(str(s['tokens_per_step'] // c) for c in s['contexts'])}).
- **Budget.** {s['budget']:.0f} CPU seconds of training per run, with evaluation not counted. Each run uses
  one BLAS thread on the `{result['backend']}` backend, and two runs go side by side on a
  {result['machine']['cpus']}-core machine. There are {len(s['seeds'])} seed(s) per model and context:
  {', '.join(map(str, s['seeds']))}.
- **Learning rates.** One symmetric sweep: the same values {', '.join(f'{v:g}' for v in s['lrs'])} for both
  models, at context {s['sweep_context']}, seed 0, with a third of the budget. Each model keeps the value with
  its lowest final validation loss: Hyena {lr['hyena']:g}, GPT {lr['gpt']:g}. The schedule is {s['warmup']}
  warm-up steps, then cosine decay to a tenth over the steps the budget allows.

{edge_note(result)}
| final validation loss in the sweep | {' | '.join(f'lr {v:g}' for v in s['lrs'])} |
|---|{'---:|' * len(s['lrs'])}
{sweep}

## Results

Validation loss in nats per character, as the mean over the seeds. "Equal time" is the end of each
run's budget; "equal tokens" is the most tokens both models reached.

{table(rows)}

Loss against training FLOPs (forward and backward, counted as three forwards by `minihyena.flops`):

![validation loss against FLOPs](assets/lm_compare_flops.png)

Loss against CPU seconds:

![validation loss against CPU seconds](assets/lm_compare_time.png)

## Reading

{chr(10).join(reading(rows))}

{verdict(rows)}

Several things shape these numbers:

- **Cost per step.** A Hyena step costs fewer FLOPs than a GPT step at every context here, and the gap
  grows with $L$. At equal time Hyena therefore takes more steps, most of all at 4096.
- **FLOPs and seconds differ.** At short contexts both models pay for Python and memory traffic more
  than for arithmetic.
- **Budget.** These are short runs: a few hundred steps and a few million tokens, early in training,
  where the GPT is still far from converged. Hyena's short and long convolutions carry a strong prior for
  local structure, which characters have plenty of, and that gives it a head start. These runs do not
  show whether the GPT closes the gap with a budget ten or a hundred times longer; we did not measure it.
- **Scale.** Everything here is tiny (under a million parameters, minutes of CPU) and uses one corpus,
  far from the paper's scale (The Pile, 125M to 355M parameters, billions of tokens). There, a
  Transformer and Hyena reach about the same perplexity, and Hyena needs about 20% fewer FLOPs for it.
  The much larger savings here belong to this small, early regime and should not be read as the
  paper's claim.

At long contexts, equal time is where a CPU shows attention's $O(L^2)$ cost most plainly.

Reproduce with `python benchmarks/lm_compare.py --write-docs`, which takes about
{(len(s['contexts']) * len(s['seeds']) * 2 * s['budget'] + 2 * len(s['lrs']) * s['budget'] / 3) / 60:.0f} CPU minutes.
"""


def write_report(result: dict, docs: Path) -> list[str]:
    assets = docs / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    plot(result, "flops", assets / "lm_compare_flops.png", "training FLOPs (x 1e12)", scale=1e12)
    plot(result, "cpu_s", assets / "lm_compare_time.png", "CPU seconds of training")
    (docs / "lm-compare.md").write_text(page(result))
    return [str(docs / "lm-compare.md"), str(assets / "lm_compare_flops.png"), str(assets / "lm_compare_time.png")]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    print("\n".join(write_report(json.loads(Path(sys.argv[1]).read_text()), Path(__file__).resolve().parents[1] / "docs")))
