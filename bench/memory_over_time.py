"""Scenario `memory`: does a worker's memory stay put over a long run?

One worker process (bench.worker_process, DEBUG off as in production) embeds 50,000
documents with the zero-cost embedder: the model is not the subject here, and a real model's
arena (onnxruntime keeps its buffers) would hide the queue's own growth. While it works, the
parent reads the process's RSS and the queue's completed count every quarter second.

Reported: RSS when ready (set up and connected, before any work), at "start" (2% done: the
first batches load what a worker loads once — the staging table, type info, lazily imported
modules), at the middle (50% done) and at the end (all done, the process still alive).
Growth = end / start − 1; target ≤ 10%.
"""

import psutil

from bench import common, corpus
from bench.processes import run_workers

TARGET_GROWTH = 0.10
START_SHARE = 0.02
SAMPLE_EVERY = 0.25


def completed() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM embedding_queue WHERE status = 'completed'")
        return cursor.fetchone()[0]


def run(*, size: int | None, quick: bool, corpus_name: str, words_per_doc: int) -> common.ScenarioResult:
    count = size or (1_000 if quick else 50_000)
    documents = corpus.documents_for(corpus_name, count, words_per_doc)
    result = common.ScenarioResult(
        "memory",
        corpus.describe(corpus_name, count, words_per_doc),
        {
            "documents": count,
            "embedder": "ZeroCostEmbedderForBenchmarks (bench/zero_cost.py): the model is not the subject",
            "workers": "1 process (bench.worker_process), DEBUG off",
            "queue_batch_size": 32,
            "sample_every_s": SAMPLE_EVERY,
        },
    )
    common.set_batch_size(32)
    common.empty_tables()
    common.insert_documents(documents)
    samples: list[tuple[float, int, int]] = []  # (seconds, documents completed, RSS bytes)

    def sample(pids: list[int], seconds: float) -> None:
        samples.append((seconds, completed(), psutil.Process(pids[0]).memory_info().rss))

    run = run_workers(1, sample=sample, sample_every=SAMPLE_EVERY)  # samples[0]: ready, before "go"
    if run.completed != count:
        result.notes.append(f"{run.completed} of {count} documents completed")
    start = next((s for s in samples[1:] if s[1] >= START_SHARE * count), samples[-1])
    middle = next((s for s in samples if s[1] >= count / 2), samples[-1])
    end = samples[-1]
    mib = 1024 * 1024
    growth = end[2] / start[2] - 1
    result.add("rss_ready_mib", "RSS when ready (before any work)", samples[0][2] / mib, "MiB")
    result.add("rss_start_mib", f"RSS at start ({start[1]:,} documents done)", start[2] / mib, "MiB")
    result.add("rss_middle_mib", f"RSS at the middle ({middle[1]:,} done)", middle[2] / mib, "MiB")
    result.add("rss_end_mib", f"RSS at the end ({end[1]:,} done)", end[2] / mib, "MiB")
    result.add("rss_max_mib", "RSS, highest sample", max(s[2] for s in samples) / mib, "MiB")
    result.add(
        "growth", "RSS growth, start → end", growth * 100, "%",
        f"<= {TARGET_GROWTH * 100:.0f}", growth <= TARGET_GROWTH,
    )  # fmt: skip
    result.add("docs_per_s", "worker throughput over the run", count / run.seconds, "docs/s")
    step = max(1, len(samples) // 40)
    result.metrics["samples"] = [
        {"s": round(s, 2), "completed": done, "rss_mib": round(rss / mib, 1)}
        for s, done, rss in samples[::step]
    ]
    common.empty_tables()
    return result
