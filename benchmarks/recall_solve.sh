#!/usr/bin/env bash
# Time to solve recall: the CPU seconds each model needs to reach 90% test accuracy, at vocabulary 10 and
# 20 and L = 256, 1024 and 4096, with 8,192 tokens per step, capped at 20 CPU minutes per run, two seeds.
# First a learning-rate sweep (V = 10, L = 256, seed 0, 300 CPU s per run); each mixer then runs at the
# value that reached 90% in the fewest CPU seconds (else: the lowest answer cross-entropy).
# One JSON per run under OUTDIR; a run whose JSON exists is skipped, so an interrupted job resumes.
#   bash benchmarks/recall_solve.sh [OUTDIR]        (default benchmarks/results/recall_solve)
#   python benchmarks/recall_plot.py OUTDIR/grid_*.json --solve 0.9 --out docs/assets/recall_solve.png
# For a quick try, smaller settings come from the environment: SWEEP_SECONDS (300), CAP_SECONDS (1200),
# CELLS ("V L B" triples), SEEDS ("1 2"), BACKEND (numba).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/recall_solve}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
BACKEND=${BACKEND:-numba}
COMMON="--mlp-ratio 1 --warmup 20 --max-steps 1000000 --clock cpu --eval-every 25 --test-size 128 --target 0.9
        --backend $BACKEND --quiet"
one() {  # NAME VOCAB LENGTH BATCH MIXER LR SEED CPU_SECONDS
  [ -f "$OUT/$1.json" ] && return 0
  echo "$(date +%T) $1"
  nice minihyena recall --vocab "$2" --seq-len "$3" --batch-size "$4" --mixers "$5" --lr "$6" --seeds "$7" \
    --time-limit "$8" $COMMON --json "$OUT/$1.json.part" --force > /dev/null
  mv "$OUT/$1.json.part" "$OUT/$1.json"
}
# compile (or load) the Numba kernels once, so that no timed run pays for it
minihyena recall --vocab 10 --seq-len 64 --mixers hyena attention-rope --max-steps 2 --eval-every 1 --test-size 8 \
  --batch-size 2 --mlp-ratio 1 --backend "$BACKEND" --quiet > /dev/null
for lr in 3e-3 1e-3 1e-2; do
  for m in hyena attention-rope; do one "sweep_V10_L256_${m}_lr${lr}" 10 256 32 "$m" "$lr" 0 "${SWEEP_SECONDS:-300}"; done
done
python - "$OUT" > "$OUT/chosen_lr.txt" <<'PY'
import glob, json, sys
best = {}
for path in glob.glob(f"{sys.argv[1]}/sweep_*.json"):
    r = json.load(open(path))["runs"][0]
    key = (0, r["seconds"]) if r["stopped"] == "target" else (1, r["test_loss"])
    if r["mixer"] not in best or key < best[r["mixer"]][0]:
        best[r["mixer"]] = (key, r["lr"])
for mixer, (_, lr) in sorted(best.items()):
    print(mixer, lr)
PY
cat "$OUT/chosen_lr.txt"
CELLS=${CELLS:-"10 256 32, 10 1024 8, 20 256 32, 20 1024 8, 10 4096 2, 20 4096 2"}  # V L B: 8,192 tokens a step
IFS=, read -ra cells <<< "$CELLS"
for cell in "${cells[@]}"; do
  set -- $cell
  for seed in ${SEEDS:-1 2}; do
    for m in hyena attention-rope; do
      lr=$(grep "^$m " "$OUT/chosen_lr.txt" | cut -d' ' -f2)
      one "grid_V$1_L$2_${m}_s$seed" "$1" "$2" "$3" "$m" "$lr" "$seed" "${CAP_SECONDS:-1200}"
    done
  done
done
echo "done: python benchmarks/recall_plot.py $OUT/grid_*.json --solve 0.9 --out docs/assets/recall_solve.png"
