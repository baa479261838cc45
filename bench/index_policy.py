"""Scenario `index`: what the vector index policy saves on a model change.

A model change over N documents (200,000 by default) with the zero-cost embedder (so that only
the queue, the writes and the index are timed), two worker processes at batch 512, from the
first claim to the new model being ready to serve search, two ways in one run:

- maintained: the new model's HNSW index exists from the first row, so every chunk written is
  inserted into the graph (what Sidecar did before the policy, for every model);
- the policy (documents/vector_index.py): the rows are written without the graph, then the
  index is built once, CONCURRENTLY, as `manage.py vector_index build` does.

Reported: each way's seconds, its parts, and maintained / policy (target ≥ 2).

Then the steady state, on the model's index over those N rows: M more documents (20,000;
`--quick` 500) written by the two worker processes (claim, the zero-cost embed, the write with
its keyword terms, complete), against pgvector's own insert of the same vectors into the same
index and table by two connections (COPY in batches of 512, each its own transaction; the same
triggers fire). Target: workers / raw insert ≥ 0.9, the worker adding nothing measurable to the
index's ceiling.
"""

import threading
import time

import numpy as np

from bench import common, corpus
from bench.processes import run_workers

DEFAULT_SIZE = 200_000
QUICK_SIZE = 2_000
BATCH = 512
PROCESSES = 2
TARGET_RATIO = 2.0
STEADY_SIZE, QUICK_STEADY_SIZE = 20_000, 500
STEADY_TARGET = 0.9


def drain(documents: list[dict]) -> float:
    """Insert the documents (untimed: the triggers queue them), drain with the workers; seconds."""
    common.empty_tables()
    common.insert_documents(documents)
    run = run_workers(PROCESSES)
    if run.completed != len(documents):
        raise RuntimeError(f"the workers completed {run.completed} of {len(documents)} documents")
    return run.seconds


def run(*, size: int | None, quick: bool, corpus_name: str, words_per_doc: int) -> common.ScenarioResult:
    from bench.zero_cost import ZeroCostEmbedderForBenchmarks
    from documents import vector_index

    count = size or (QUICK_SIZE if quick else DEFAULT_SIZE)
    documents = corpus.documents_for(corpus_name, count, words_per_doc)
    model = ZeroCostEmbedderForBenchmarks().model_id
    result = common.ScenarioResult(
        "index",
        corpus.describe(corpus_name, count, words_per_doc),
        {
            "documents": count,
            "batch": BATCH,
            "worker_processes": PROCESSES,
            "embedder": "zero-cost",
            "model": model,
        },
    )
    common.set_batch_size(BATCH)
    steady = corpus.documents_for(
        corpus_name, count + (QUICK_STEADY_SIZE if quick else STEADY_SIZE), words_per_doc
    )
    steady = steady[count:]  # new texts: new vectors
    try:
        vector_index.drop(model)
        vector_index.build(model, concurrently=False)  # on no rows: maintained from the first
        maintained = drain(documents)
        vector_index.drop(model)
        written = drain(documents)
        build = vector_index.build(model)
        workers_rate, raw_rate = steady_state(steady, model)
    finally:
        common.empty_tables()
        vector_index.drop(model)
    policy = written + build
    result.add("maintained_s", "model change, index maintained row by row: drain", maintained, "s")
    result.add("policy_drain_s", "model change, the policy: drain without the index", written, "s")
    result.add("policy_build_s", "the policy: one index build after it (CONCURRENTLY)", build, "s")
    result.add("policy_s", "model change, the policy: drain + build", policy, "s")
    result.add(
        "maintained_vs_policy", "maintained / policy (same run)", maintained / policy, "ratio",
        f">= {TARGET_RATIO}", maintained / policy >= TARGET_RATIO,
    )  # fmt: skip
    result.add("steady_workers_docs_per_s", f"steady state, {len(steady):,} more documents: 2 worker processes",
               workers_rate, "docs/s")  # fmt: skip
    result.add("steady_raw_docs_per_s", "steady state: pgvector's own insert of the same vectors, 2 connections",
               raw_rate, "docs/s")  # fmt: skip
    result.add("steady_workers_vs_raw", "workers / raw insert (same run)", workers_rate / raw_rate, "ratio",
               f">= {STEADY_TARGET}", workers_rate / raw_rate >= STEADY_TARGET)  # fmt: skip
    result.metrics.update(
        maintained_docs_per_s=count / maintained,
        unindexed_docs_per_s=count / written,
        build_vectors_per_s=count / build,
    )
    return result


def steady_state(documents: list[dict], model: str) -> tuple[float, float]:
    """(docs/s of the worker processes, docs/s of raw COPY) for `documents` added to the model's
    indexed rows; the workers' rows are deleted (and vacuumed) before the raw insert."""
    from django.db import connection

    from bench.processes import production_environment
    from bench.zero_cost import ZeroCostEmbedderForBenchmarks

    common.insert_documents(documents)
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, content FROM source_documents d WHERE NOT EXISTS "
                       "(SELECT 1 FROM document_embeddings e WHERE e.document_id = d.id) ORDER BY id")  # fmt: skip
        rows = cursor.fetchall()
    run = run_workers(PROCESSES)
    if run.completed != len(rows):
        raise RuntimeError(f"the workers completed {run.completed} of {len(rows)} documents")
    workers_rate = len(rows) / run.seconds
    ids = [row[0] for row in rows]
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM document_embeddings WHERE document_id = ANY(%s)", [ids])
        cursor.execute("VACUUM document_embeddings")  # their index entries go, as before the workers ran

    vectors = ZeroCostEmbedderForBenchmarks().embed([text for _, text in rows]).vectors
    database_url = production_environment()["DATABASE_URL"]
    shares = [list(range(n, len(rows), PROCESSES)) for n in range(PROCESSES)]
    threads = [
        threading.Thread(
            target=_copy_rows, args=(database_url, model, [rows[i] for i in share], vectors[share])
        )
        for share in shares
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    raw_rate = len(rows) / (time.perf_counter() - started)
    return workers_rate, raw_rate


def _copy_rows(database_url: str, model: str, rows: list, vectors: np.ndarray) -> None:
    """COPY the rows' chunks with their vectors, BATCH at a time, each batch a transaction."""
    import psycopg
    from pgvector.psycopg import register_vector

    columns = ("document_id, chunk_index, source_text, source_text_hash, document_text_hash, embedding, model, "
               "token_count, created_at, updated_at")  # fmt: skip
    with psycopg.connect(database_url) as conn:
        register_vector(conn)
        for start in range(0, len(rows), BATCH):
            with conn.transaction(), conn.cursor() as cursor:
                with cursor.copy(f"COPY document_embeddings ({columns}) FROM STDIN") as copy:
                    batch = zip(rows[start : start + BATCH], vectors[start : start + BATCH], strict=True)
                    for (document_id, text), vector in batch:
                        copy.write_row(
                            (document_id, 0, text, "h", "h", vector, model, len(text.split()), "now", "now")
                        )
