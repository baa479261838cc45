"""Scenario `machinery`: the queue alone, with a zero-cost embedder, in 1, 2 and 4 worker processes.

Documents are inserted first (timed separately); then the worker processes, already started
and connected, are released together and drain the queue: claim, read, (no-cost) embed, the
real vector writes, complete. One more in-process run under cProfile shows where the time goes.
"""

from bench import common, corpus
from bench.processes import run_workers
from bench.profiling import WORKER_PHASES, profile_worker

PROCESS_COUNTS = (1, 2, 4)
TARGET_DOCS_PER_S = 5000

PHASES = {**WORKER_PHASES, "embed (zero-cost)": [("zero_cost.py", "embed")]}


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
        run = run_workers(processes)
        elapsed, completed = run.seconds, run.completed
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

    from bench.zero_cost import ZeroCostEmbedderForBenchmarks

    phases, top, total = profile_worker(ZeroCostEmbedderForBenchmarks(), documents[:profile_count], PHASES)
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
