"""Scenario `latency`: insert → embedded, one document at a time, with an idle worker waiting.

A QueueWorker with the zero-cost embedder runs in a thread of this process
(`run(until_empty=False)`: when the queue is empty it waits and polls again). Single
documents are inserted at a fixed interval; each is timed from just before its INSERT until
its first sidecar row is visible (polled every 5 ms).
"""

import threading
import time

from bench import common, corpus

TARGET_P50_S = 1.0
POLL_SECONDS = 0.005
GIVE_UP_SECONDS = 30.0


def _worker_thread(worker, ready: threading.Event) -> None:
    from django.db import connections

    try:
        with worker:
            ready.set()
            worker.run(until_empty=False)
    finally:
        ready.set()
        connections.close_all()  # this thread's own connection


def run(*, size: int | None, quick: bool, corpus_name: str, words_per_doc: int) -> common.ScenarioResult:
    from bench.zero_cost import ZeroCostEmbedderForBenchmarks
    from documents.models import DocumentEmbedding, SourceDocument
    from queue_admin.worker import QueueWorker

    count = size or (10 if quick else 30)
    interval = 0.5 if quick else 2.0
    documents = corpus.documents_for(corpus_name, count, words_per_doc)
    result = common.ScenarioResult(
        "latency",
        corpus.describe(corpus_name, count, words_per_doc),
        {
            "documents": count,
            "interval_s": interval,
            "embedder": "ZeroCostEmbedderForBenchmarks",
            "worker": "1 thread",
        },
    )
    common.empty_tables()
    worker = QueueWorker(ZeroCostEmbedderForBenchmarks(), name="bench-latency")
    ready = threading.Event()
    thread = threading.Thread(target=_worker_thread, args=(worker, ready), daemon=True)
    thread.start()
    ready.wait(30)
    time.sleep(1.5)  # let it find the queue empty and go idle
    latencies = []
    try:
        for doc in documents:
            started = time.perf_counter()
            document = SourceDocument.objects.create(**doc)
            while not DocumentEmbedding.objects.filter(document_id=document.id).exists():
                if time.perf_counter() - started > GIVE_UP_SECONDS:
                    result.notes.append(f"a document was not embedded within {GIVE_UP_SECONDS:.0f} s")
                    break
                time.sleep(POLL_SECONDS)
            else:
                latencies.append(time.perf_counter() - started)
            time.sleep(max(0.0, interval - (time.perf_counter() - started)))
    finally:
        worker.stop_requested.set()
        thread.join(10)
    p50 = common.percentile(latencies, 50)
    result.metrics["latencies_s"] = latencies
    result.add(
        "p50_s",
        "insert → embedded, p50",
        p50,
        "s",
        f"<= {TARGET_P50_S}",
        bool(latencies) and p50 <= TARGET_P50_S,
    )
    result.add("p95_s", "insert → embedded, p95", common.percentile(latencies, 95), "s")
    result.add("max_s", "insert → embedded, max", max(latencies, default=0.0), "s")
    common.empty_tables()
    return result
