"""What the compile cache saves a resumed run: compilation and wall time of a
run's first session (an empty cache) against its resumed session (the cache
the first one filled).

    python bench/bench_resume.py [--experiment humanoid_cpu] [--steps 163840] [--rounds 3]

Each round starts `python -m jaxrl.train experiment=<experiment>` (one seed,
logger=none, no video, `--steps` env steps in 4 chunks) with a fresh
`compile_cache` folder, stops it with SIGTERM once its first chunk is logged,
as a spot instance's preemption notice would, and resumes it in a new process
with the same command line. Prints each session's compile_s (summary.json),
its wall time (process start to exit) and the programs it loaded from the
cache, then medians.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jaxrl.errors import RESUMABLE_EXIT


def session(args: list[str], env: dict[str, str], run_dir: Path, stop_after_first_chunk: bool) -> dict[str, float]:
    """One `python -m jaxrl.train ARGS` process, SIGTERMed once its first chunk
    is logged when asked: its summary's compile_s and cache hits, and its wall time."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "jaxrl.train", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = run_dir / "metrics.jsonl"
    while stop_after_first_chunk and proc.poll() is None and not (metrics.exists() and metrics.read_text().strip()):
        time.sleep(0.05)
    if stop_after_first_chunk:
        proc.send_signal(signal.SIGTERM)
    code = proc.wait()
    wall = time.perf_counter() - start
    if code != (RESUMABLE_EXIT if stop_after_first_chunk else 0):
        raise SystemExit(f"python -m jaxrl.train {' '.join(args)} exited with {code}")
    summary = json.loads((run_dir / "summary.json").read_text())
    hits = (summary.get("compile_cache") or {}).get("hits", 0)
    return {"compile_s": summary["compile_s"], "wall_s": wall, "hits": hits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="humanoid_cpu")
    parser.add_argument("--steps", type=int, default=163840, help="the run's env steps (4 chunks)")
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    # the run's compile_cache, not one the caller's JAX_COMPILATION_CACHE_DIR would impose
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": ""}
    results: dict[str, list[dict[str, float]]] = {"first session": [], "resumed": []}
    for r in range(opts.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            args = [f"experiment={opts.experiment}", "seeds=1", "num_logs=4", "logger=none", "alerts=none",
                    "video.enabled=false", "eval.episodes=2", f"total_timesteps={opts.steps}",
                    f"compile_cache={tmp}/xla", f"run_dir={run_dir}"]
            first = session(args, env, run_dir, stop_after_first_chunk=True)
            resumed = session([*args, f"resume={run_dir}"], env, run_dir, stop_after_first_chunk=False)
        for name, row in (("first session", first), ("resumed", resumed)):
            results[name].append(row)
            print(f"round {r}: {name:13s} compile {row['compile_s']:6.1f} s, wall {row['wall_s']:6.1f} s, "
                  f"{row['hits']} programs from the cache", flush=True)
    print(f"\n{opts.experiment}, medians of {opts.rounds}:")
    for name, rows in results.items():
        med = {k: statistics.median(row[k] for row in rows) for k in ("compile_s", "wall_s")}
        print(f"  {name:13s} compile {med['compile_s']:6.1f} s, wall {med['wall_s']:6.1f} s")


if __name__ == "__main__":
    main()
