"""Scenario `machinery`: the queue alone, with a zero-cost embedder, in 1, 2 and 4 worker processes.

Documents are inserted first (timed separately); then the worker processes, already started
and connected, are released together and drain the queue: claim, read, (no-cost) embed, the
real vector writes, complete. At the default batch size first, then at a large one, with the
model's HNSW index maintained row by row (as past VECTOR_INDEX_MIN_ROWS); then once more at the
large one without it, which says how much of a vector write is pgvector's index insert rather
than the queue. One more
in-process run under cProfile shows where our time goes.
"""

from bench import common, corpus
from bench.processes import run_workers
from bench.profiling import WORKER_PHASES, profile_worker

PROCESS_COUNTS = (1, 2, 4)
DEFAULT_BATCH = 32
LARGE_BATCH = 512
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
            "embedder": "ZeroCostEmbedderForBenchmarks (bench/zero_cost.py): distinct vectors",
            "queue_batch_sizes": [DEFAULT_BATCH, LARGE_BATCH],
            "process_counts": list(PROCESS_COUNTS),
            "profiled_documents": profile_count,
        },
    )
    from bench.zero_cost import ZeroCostEmbedderForBenchmarks
    from documents import vector_index

    # With the model's HNSW index maintained row by row (a model past VECTOR_INDEX_MIN_ROWS),
    # then without (below it, or while a model change fills a new model).
    model = ZeroCostEmbedderForBenchmarks().model_id
    vector_index.build(model, concurrently=False)
    try:
        for batch in (DEFAULT_BATCH, LARGE_BATCH):
            for processes in PROCESS_COUNTS:
                _measure(result, documents, batch, processes)
    finally:
        common.empty_tables()
        vector_index.drop(model)
    _measure(result, documents, LARGE_BATCH, 2, label="without the HNSW index")
    common.empty_tables()
    common.set_batch_size(DEFAULT_BATCH)

    phases, top, total = profile_worker(ZeroCostEmbedderForBenchmarks(), documents[:profile_count], PHASES)
    result.metrics["profile_total_s"] = total
    result.metrics["profile_phases_s"] = phases
    result.metrics["profile_top10_tottime"] = top
    result.notes.append(
        f"profile of 1 in-process worker, batch {DEFAULT_BATCH}, {profile_count} documents, {total:.2f} s "
        "under cProfile (cProfile slows Python, not the database): "
        + ", ".join(f"{phase} {seconds / total:.0%}" for phase, seconds in phases.items() if total)
    )
    common.empty_tables()
    return result


def _measure(result: common.ScenarioResult, documents, batch: int, processes: int, label: str = "") -> None:
    """Insert the documents (timed apart), drain them with `processes` workers at `batch`."""
    count = len(documents)
    key = f"batch{batch}_{processes}p" + ("_no_hnsw" if label else "")
    common.set_batch_size(batch)
    common.empty_tables()
    insert_seconds = common.insert_documents(documents)
    result.metrics[f"insert_{key}_docs_per_s"] = count / insert_seconds
    run = run_workers(processes)
    embedded = common.embedded_documents()
    if run.completed != count or embedded != count:
        result.notes.append(f"{key}: {run.completed} completed, {embedded} embedded of {count}")
    rate = count / run.seconds
    measure = f"{processes} worker process(es), batch {batch}" + (f", {label}" if label else "")
    if label:  # an attribution, not a configuration anyone runs: no target
        result.add(f"workers_{key}_docs_per_s", measure, rate, "docs/s")
    else:
        result.add(
            f"workers_{key}_docs_per_s", measure, rate, "docs/s", f">= {TARGET_DOCS_PER_S}", rate >= TARGET_DOCS_PER_S
        )  # fmt: skip
    # Where the CPU went, per document: ours (the workers' Python) and PostgreSQL's.
    result.metrics[f"workers_{key}_worker_cpu_ms_per_doc"] = run.worker_cpu_s / count * 1000
    if run.cpu.postgres_s is not None:
        result.metrics[f"workers_{key}_postgres_cpu_ms_per_doc"] = run.cpu.postgres_s / count * 1000
        result.notes.append(
            f"{measure}: CPU per document: workers {run.worker_cpu_s / count * 1000:.3f} ms, "
            f"PostgreSQL {run.cpu.postgres_s / count * 1000:.3f} ms; machine busy "
            f"{run.cores(run.cpu.machine_busy_s):.2f} cores"
        )
