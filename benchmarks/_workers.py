"""Run a benchmark's measurement in a child process (thread pools then never compete) and read its JSON lines."""
from __future__ import annotations

import json
import os
import subprocess
import sys

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def run_worker(script: str, name: str, args: list[str], threads: int = 0, env: dict | None = None) -> list[dict]:
    """``python script --worker name *args`` with BLAS (and ``MINIHYENA_BENCH_THREADS``, for torch) on
    ``threads`` threads (0: as the environment has it); the JSON objects it printed, one per line."""
    import minihyena  # noqa: F401  (sets OPENBLAS_THREAD_TIMEOUT unless set: the workers start with it, as the command line does)

    env = dict(os.environ, **(env or {}))
    if threads:
        for var in THREAD_VARIABLES:
            env[var] = str(threads)
        env["MINIHYENA_BENCH_THREADS"] = str(threads)
    proc = subprocess.run([sys.executable, os.path.abspath(script), "--worker", name, *args], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"{name}: failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return []
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
