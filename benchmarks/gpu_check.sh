#!/usr/bin/env bash
# GPU check, for a machine with a CUDA device and CuPy. Needs no install and no network: it runs the
# checkout itself (PYTHONPATH), so it works where CuPy, NumPy and pytest are installed and nothing
# can be fetched. Each stage runs under its own time limit (240 + 100 + 90 s: under 8 minutes in all):
#   1. gpu-tests: `pytest -m gpu`, every test marked for a GPU: the backend parity tests (cupy against
#      numpy, float32 with stated tolerances and float64), the float64 gradient checks of every op on
#      cupy, and cached decoding on cupy (tests/test_backend_parity.py, test_gradients.py, test_decode.py);
#   2. the train-step benchmark (benchmarks/backend_speed.py) on every available backend;
#   3. the Hyena operator forward+backward on cupy against torch's scaled_dot_product_attention (causal,
#      4 heads x 64, the attention core only) at L = 8k, 32k and 64k, where torch with CUDA is installed.
# Every stage reports PASS, FAIL or SKIP with the reason; a failing stage does not stop the others. The
# script ends with a short table and exits 0 only if no stage failed (a machine without a GPU: exit 2).
# Everything it prints, each stage's log and the tests' JUnit XML go to OUTDIR.
# Usage: bash benchmarks/gpu_check.sh OUTDIR        (PYTHON=/path/to/python to choose the interpreter)
set -u
cd "$(dirname "$0")/.." || exit 2
if [ $# -ne 1 ]; then echo "usage: bash benchmarks/gpu_check.sh OUTDIR" >&2; exit 2; fi
mkdir -p "$1" || exit 2
LOG=$(cd "$1" && pwd)
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec > >(tee "$LOG/gpu_check.txt") 2>&1
STATUS=()
FAILED=0

stage() {  # stage NAME LIMIT_SECONDS COMMAND...: run with a time limit, record PASS/FAIL and seconds
  local name=$1 limit=$2; shift 2
  echo; echo "=== $name (limit ${limit}s)"
  local t0=$SECONDS rc
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$LOG/$name.txt"
  rc=${PIPESTATUS[0]}
  local dt=$((SECONDS - t0)) verdict=PASS
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then verdict="FAIL (timed out)"; FAILED=1
  elif [ "$rc" -ne 0 ]; then verdict="FAIL (exit $rc)"; FAILED=1; fi
  STATUS+=("$(printf '%-22s %-18s %4ss' "$name" "$verdict" "$dt")")
}

echo "=== environment"
command -v nvidia-smi >/dev/null && nvidia-smi -L
REASON=$("$PY" - <<'EOF' 2>&1
from minihyena.backends import BackendUnavailableError, get_backend
try:
    be = get_backend("cupy")
except BackendUnavailableError as exc:
    print(exc)
else:
    import cupy
    dev = cupy.cuda.Device()
    name = cupy.cuda.runtime.getDeviceProperties(dev.id)["name"].decode()
    print(f"OK cupy {cupy.__version__}, device {dev.id}: {name}")
EOF
)
echo "$REASON"
case "$REASON" in
  OK*) ;;
  *) echo; echo "no usable CUDA device for minihyena: $REASON"; echo "nothing was run."; exit 2 ;;
esac

stage gpu-tests 240 "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs --junitxml="$LOG/gpu-tests.xml" \
  tests/test_backend_parity.py tests/test_gradients.py tests/test_decode.py
stage train-step-benchmark 100 "$PY" benchmarks/backend_speed.py --steps 3 --warmup 1

stage operator-vs-sdpa 90 "$PY" - <<'EOF'
"""Hyena operator (cupy) vs causal scaled_dot_product_attention (torch, CUDA): forward+backward, fp32."""
import time

import numpy as np

from minihyena import Tensor
from minihyena.backends import get_backend
from minihyena.nn.hyena import HyenaOperator

try:
    import torch
    from torch.nn.functional import scaled_dot_product_attention as sdpa
    if not torch.cuda.is_available():
        raise ImportError("torch has no CUDA device")
except ImportError as exc:
    torch = None
    print(f"torch comparison skipped: {exc}")

cp = get_backend("cupy").xp
D, H, B = 256, 4, 1


def timed(fn, sync, reps=3):
    fn(); sync()  # warm-up: cuFFT plans, kernel compilation
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t) / reps * 1e3


rows = []
for L in (8192, 32768, 65536):
    op = HyenaOperator(D, L, order=2).to("cupy")
    x = Tensor(np.random.default_rng(0).standard_normal((B, L, D)).astype(np.float32), backend="cupy", requires_grad=True)
    g = cp.ones((B, L, D), dtype=cp.float32)

    def hyena():
        x.grad = None
        op(x).backward(g)

    t_h = timed(hyena, cp.cuda.Device().synchronize)
    t_a = float("nan")
    if torch is not None:
        q, k, v = (torch.randn(B, H, L, D // H, device="cuda", requires_grad=True) for _ in range(3))
        go = torch.ones(B, H, L, D // H, device="cuda")

        def attention():
            sdpa(q, k, v, is_causal=True).backward(go)

        try:
            t_a = timed(attention, torch.cuda.synchronize)
        except RuntimeError as exc:  # e.g. out of memory
            print(f"L={L}: attention failed: {exc}")
    rows.append((L, t_h, t_a))
    print(f"L={L}: hyena {t_h:.1f} ms, attention {t_a:.1f} ms", flush=True)

print(f"\n{'L':>6} {'Hyena op (cupy) ms':>19} {'SDPA (torch) ms':>16} {'SDPA / Hyena':>13}")
for L, t_h, t_a in rows:
    print(f"{L:>6} {t_h:19.1f} {t_a:16.1f} {t_a / t_h:13.2f}")
EOF

echo; echo "=== summary (logs in $LOG)"
printf '%-22s %-18s %5s\n' stage result time
printf '%s\n' "${STATUS[@]}"
echo; echo "--- train step (from the benchmark)"
sed -n '/^backend /,$p' "$LOG/train-step-benchmark.txt" 2>/dev/null
echo; echo "--- operator vs attention"
sed -n '/^ *L /,$p' "$LOG/operator-vs-sdpa.txt" 2>/dev/null
exit $FAILED
