"""Scenario `index`: what the vector index policy saves on a model change.

A model change over N documents (200,000 by default) with the zero-cost embedder (so that only
the queue, the writes and the index are timed), two worker processes at batch 512, from the
first claim to the new model being ready to serve search, two ways in one run:

- maintained: the new model's HNSW index exists from the first row, so every chunk written is
  inserted into the graph (what Sidecar did before the policy, for every model);
- the policy (documents/vector_index.py): the rows are written without the graph, then the
  index is built once, CONCURRENTLY, as `manage.py vector_index build` does.

Reported: each way's seconds, its parts, and maintained / policy (target ≥ 2).
"""

from bench import common, corpus
from bench.processes import run_workers

DEFAULT_SIZE = 200_000
QUICK_SIZE = 2_000
BATCH = 512
PROCESSES = 2
TARGET_RATIO = 2.0


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
    try:
        vector_index.drop(model)
        vector_index.build(model, concurrently=False)  # on no rows: maintained from the first
        maintained = drain(documents)
        vector_index.drop(model)
        written = drain(documents)
        build = vector_index.build(model)
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
    result.metrics.update(
        maintained_docs_per_s=count / maintained,
        unindexed_docs_per_s=count / written,
        build_vectors_per_s=count / build,
    )
    return result
