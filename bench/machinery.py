"""Scenario `machinery`: the queue alone, with a zero-cost embedder, in 1, 2 and 4 worker processes.

Documents are inserted first (timed separately); then the worker processes, already started
and connected, are released together and drain the queue: claim, read, (no-cost) embed, the
real vector writes, complete. One more in-process run under cProfile shows where the time goes.
"""

import cProfile
import io
import pstats
import subprocess
import sys
import time
from pathlib import Path

from bench import common, corpus

PROCESS_COUNTS = (1, 2, 4)
TARGET_DOCS_PER_S = 5000
ROOT = Path(__file__).resolve().parent.parent

# Where a worker batch spends its time, by the functions it calls (cumulative time).
PHASES = {
    "claim": [("queue_sql.py", "claim_batch"), ("registry.py", "reclaim_and_expire")],
    "read": [
        ("sidecar.py", "current_texts"),
        ("sidecar.py", "embedded_hashes"),
        ("sidecar.py", "vectors_for_hashes"),
    ],
    "embed (zero-cost)": [("zero_cost.py", "embed")],
    "write": [("sidecar.py", "lock_current_hashes"), ("sidecar.py", "replace_chunks")],
    "complete": [("queue_sql.py", "complete"), ("registry.py", "record_batch"), ("registry.py", "set_batch")],
    "config": [("config.py", "current")],
}


def drain_with_processes(processes: int) -> tuple[float, int]:
    """Start `processes` workers, release them together, wait; (seconds, completed)."""
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.machinery_worker"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(processes)
    ]
    try:
        for child in children:
            line = child.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"a machinery worker failed to start (said {line!r})")
        started = time.perf_counter()
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        completed = 0
        for child in children:
            out, _ = child.communicate(timeout=3600)
            completed += int(out.split()[-1]) if out.strip() else 0
        elapsed = time.perf_counter() - started
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    for child in children:
        if child.returncode != 0:
            raise RuntimeError(f"a machinery worker exited with status {child.returncode}")
    return elapsed, completed


def profile_one_worker(documents: list[dict]) -> tuple[dict, list[dict], float]:
    """cProfile one in-process worker draining `documents`; (phase seconds, top 10 by tottime, total)."""
    from bench.zero_cost import ZeroCostEmbedderForBenchmarks
    from queue_admin.worker import QueueWorker

    common.empty_tables()
    common.insert_documents(documents)
    profiler = cProfile.Profile()
    with QueueWorker(ZeroCostEmbedderForBenchmarks(), name="bench-profile") as worker:
        profiler.enable()
        worker.run(until_empty=True)
        profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = stats.total_tt
    phases = {}
    for phase, functions in PHASES.items():
        phases[phase] = sum(
            cumulative
            for (filename, _, name), (_, _, _, cumulative, _) in stats.stats.items()
            if any(filename.endswith(f"/{file}") and name == function for file, function in functions)
        )
    phases["other Python (worker planning, hashing, chunking, ORM glue)"] = max(
        0.0, total - sum(phases.values())
    )
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
    return phases, top_rows, total


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
    return "other Python"


def run(*, size: int | None, quick: bool, corpus_name: str, words_per_doc: int) -> common.ScenarioResult:
    count = size or (500 if quick else 20000)
    profile_count = min(count, 300 if quick else 2000)
    documents = corpus.documents_for(corpus_name, count, words_per_doc)
    result = common.ScenarioResult(
        "machinery",
        corpus.describe(corpus_name, count, words_per_doc),
        {
            "documents": count,
            "embedder": "ZeroCostEmbedderForBenchmarks (bench/zero_cost.py)",
            "queue_batch_size": 32,
            "process_counts": list(PROCESS_COUNTS),
            "profiled_documents": profile_count,
        },
    )
    common.set_batch_size(32)
    for processes in PROCESS_COUNTS:
        common.empty_tables()
        insert_seconds = common.insert_documents(documents)
        result.add(
            f"insert_{processes}p_docs_per_s", f"insert + enqueue (before {processes}p run)",
            count / insert_seconds, "docs/s",
        )  # fmt: skip
        elapsed, completed = drain_with_processes(processes)
        embedded = common.embedded_documents()
        if completed != count or embedded != count:
            result.notes.append(
                f"{processes} processes: {completed} completed, {embedded} embedded of {count}"
            )
        rate = count / elapsed
        result.add(
            f"workers_{processes}_docs_per_s", f"{processes} worker process(es), zero-cost embedder",
            rate, "docs/s", f">= {TARGET_DOCS_PER_S}", rate >= TARGET_DOCS_PER_S,
        )  # fmt: skip

    phases, top, total = profile_one_worker(documents[:profile_count])
    result.metrics["profile_total_s"] = total
    result.metrics["profile_phases_s"] = phases
    result.metrics["profile_top10_tottime"] = top
    result.notes.append(
        f"profile of 1 in-process worker, {profile_count} documents, {total:.2f} s under cProfile "
        "(cProfile slows Python, not the database): "
        + ", ".join(f"{phase} {seconds / total:.0%}" for phase, seconds in phases.items() if total)
    )
    common.empty_tables()
    return result
