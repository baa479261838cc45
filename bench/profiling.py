"""Where one worker's time goes: cProfile over an in-process QueueWorker draining the queue.

cProfile's clock is the wall clock, so a phase's time includes its waits (database round
trips, a provider's latency); cProfile slows Python, not the database or the network. The
worker runs `process_one_batch()` in a loop, each batch written before the next is claimed:
cProfile sees one thread, and run()'s writer thread would hide the write from it. The
figures are the work per batch, not how run() overlaps it.
"""

import cProfile
import io
import pstats
from pathlib import Path

from bench import common

# Where a worker batch spends its time, by the functions it calls (cumulative time).
# Scenarios add their embed call, and anything else they want told apart.
WORKER_PHASES = {
    "claim": [("queue_sql.py", "claim_batch"), ("registry.py", "reclaim_and_expire")],
    "read": [
        ("sidecar.py", "current_texts"),
        ("sidecar.py", "embedded_hashes"),
        ("sidecar.py", "vectors_for_hashes"),
    ],
    "write": [("sidecar.py", "lock_current_hashes"), ("sidecar.py", "replace_chunks")],
    "complete": [("queue_sql.py", "complete"), ("registry.py", "record_batch"), ("registry.py", "set_batch")],
    "config": [("config.py", "current")],
}
OTHER = "other Python (worker planning, hashing, chunking, ORM glue)"


def profile_worker(provider, documents: list[dict], phases: dict) -> tuple[dict, list[dict], float]:
    """Insert `documents`, drain them with one in-process worker under cProfile; returns
    (seconds per phase, the top 10 functions by own time, total seconds)."""
    from queue_admin.worker import QueueWorker

    common.empty_tables()
    common.insert_documents(documents)
    profiler = cProfile.Profile()
    with QueueWorker(provider, name="bench-profile") as worker:
        profiler.enable()
        while worker.process_one_batch() is not None:
            pass
        profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = stats.total_tt
    seconds = {}
    for phase, functions in phases.items():
        seconds[phase] = sum(
            cumulative
            for (filename, _, name), (_, _, _, cumulative, _) in stats.stats.items()
            if any(filename.endswith(f"/{file}") and name == function for file, function in functions)
        )
    seconds[OTHER] = max(0.0, total - sum(seconds.values()))
    top = sorted(stats.stats.items(), key=lambda entry: entry[1][2], reverse=True)[:10]
    top_rows = [
        {
            "function": f"{_short(filename)}:{line}({name})",
            "group": _group(filename, name),
            "calls": calls,
            "tottime_s": round(tottime, 4),
            "cumtime_s": round(cumulative, 4),
        }
        for (filename, line, name), (_, calls, tottime, cumulative, _) in top
    ]
    return seconds, top_rows, total


def summary(seconds: dict, total: float) -> str:
    return ", ".join(f"{phase} {value / total:.0%}" for phase, value in seconds.items() if total)


def _short(filename: str) -> str:
    parts = Path(filename).parts
    return "/".join(parts[-2:]) if len(parts) > 1 else filename


def _group(filename: str, name: str) -> str:
    """Which layer a function belongs to, for the profile summary."""
    if filename == "~":  # a C function: the interesting ones are the driver's I/O
        if "psycopg" in name or "execute" in name or "recv" in name or "send" in name or "poll" in name:
            return "database round trip (psycopg, C)"
        return "builtin"
    if "django/db" in filename or "django/" in filename:
        return "Python-ORM (Django)"
    if "psycopg" in filename:
        return "driver (psycopg)"
    if "pgvector" in filename:
        return "write (pgvector encode)"
    if filename.endswith("queue_sql.py"):
        return "claim/complete (queue_sql)"
    if filename.endswith("sidecar.py"):
        return "read/write (documents.sidecar)"
    if filename.endswith("worker.py"):
        return "worker Python"
    if "httpx" in filename or "httpcore" in filename:
        return "HTTP client (httpx)"
    return "other Python"
