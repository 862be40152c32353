"""Time per XLA operation from a jax.profiler trace, for the bench scripts.

`record` runs a computation under the profiler and returns the trace's
events; `op_times` sums them per operation: on an accelerator the device's
own lines (one event per HLO operation, or its streams' kernels), on the CPU
XLA's leaf operations on its threads (not the loops and calls that enclose
them, nor the runtime's and Python's spans), summed over the threads.
"""

from __future__ import annotations

import collections
import gzip
import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable

# CPU trace events that enclose others or are not XLA's operations
_NOT_CPU_OPS = ("$", "end: ", "while", "call", "cond", "Pjit", "CommonPjRt")


def record(run: Callable[[], object], keep: Path | None = None) -> list[dict]:
    """Runs `run()` (which must block until its results are ready) under
    jax.profiler and returns the Perfetto trace's events; `keep`: also copy
    the trace (.json.gz) there."""
    import jax

    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            run()
        trace = next(Path(tmp).rglob("perfetto_trace.json.gz"))
        if keep is not None:
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(trace, keep)
        return json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]


def op_times(events: list[dict]) -> tuple[collections.Counter, collections.Counter, bool]:
    """(microseconds per operation name, calls per operation name, whether
    they are an accelerator's) from `record`'s events."""
    meta = {(e["name"], e["pid"], e.get("tid")): e["args"]["name"]
            for e in events if e.get("ph") == "M" and "name" in e.get("args", {})}
    device = {pid for (kind, pid, _), name in meta.items() if kind == "process_name" and ("GPU" in name or "TPU" in name)}
    lines = {(pid, tid): name for (kind, pid, tid), name in meta.items() if kind == "thread_name" and pid in device}
    # the device's "XLA Ops" line holds one event per HLO operation; without it, its streams' kernels
    ops = {key for key, name in lines.items() if name == "XLA Ops"} or {key for key, name in lines.items() if "Stream" in name}

    def counted(e: dict) -> bool:
        if e.get("ph") != "X":
            return False
        if ops:
            return (e["pid"], e.get("tid")) in ops
        name = e.get("name", "")
        return not (name.startswith(_NOT_CPU_OPS) or "Thunk" in name or "ThreadPool" in name)

    totals, counts = collections.Counter(), collections.Counter()
    for e in filter(counted, events):
        totals[e["name"]] += e["dur"]
        counts[e["name"]] += 1
    return totals, counts, bool(ops)
