"""Scenario `pipeline`: the full pipeline against the raw local model, on the same texts, in one run.

raw: the provider's `embed` called directly on the chunks the worker would send (chunked
beforehand, untimed, exactly as the worker chunks: the model's own token spans, 256 tokens,
32 overlap), grouped by queue batch, sorted by length, in calls of the provider's batch size.
pipeline: bulk insert → trigger → claim → embed → write → complete, with a QueueWorker run
in-process until the queue is empty (what `process_queue` runs). The model is loaded and
warmed before either is timed. The two alternate (raw first, then pipeline first) and medians
are reported, because the machine is shared and noisy. Then once more with a running
`qcluster` as the driver (bench/qcluster_driver.py: one drain, the model warmed first).

`--device cuda` runs the raw model and the in-process pipeline on onnxruntime's CUDA
provider (onnxruntime-gpu and an NVIDIA GPU needed), at larger batch sizes; the qcluster
pass and the thread sweep are CPU-only and skipped there.
"""

import os
import time

from bench import common, corpus, qcluster_driver
from bench.processes import CpuWatch
from documents.chunking import split_into_chunks

DEFAULT_BATCH_SIZE = 32
SWEEP_BATCH_SIZES = (1, 8, 32, 64)
SWEEP_THREADS = (1, 2)
TARGET_RATIO = 0.95
# On a GPU a model run should hold many texts: sub-batches of 64, queue batches up to 256.
GPU_SUB_BATCH_SIZE = 64
GPU_SWEEP_BATCH_SIZES = (32, 64, 128, 256)
GPU_TARGET_RATIO = 0.9


def chunk_groups(provider, documents: list[dict], batch_size: int) -> list[list[str]]:
    """The chunk texts of each queue batch of `batch_size` documents, as the worker makes them."""
    from queue_admin.worker import CHUNK_OVERLAP_TOKENS

    groups = []
    for start in range(0, len(documents), batch_size):
        texts = []
        for doc in documents[start : start + batch_size]:
            texts.extend(
                split_into_chunks(
                    doc["content"],
                    max_tokens=provider.max_input_tokens,
                    overlap_tokens=CHUNK_OVERLAP_TOKENS,
                    token_spans=provider.token_spans,
                )
            )
        groups.append(sorted(texts, key=len))
    return groups


def raw_docs_per_second(provider, groups: list[list[str]], count: int) -> float:
    size = provider.max_batch_size
    started = time.perf_counter()
    for texts in groups:
        for start in range(0, len(texts), size):
            provider.embed(texts[start : start + size])
    return count / (time.perf_counter() - started)


def pipeline_docs_per_second(
    provider, documents: list[dict], batch_size: int
) -> tuple[float, int, float | None]:
    """Insert and drain with one in-process worker; returns (docs/s, documents embedded, cores
    PostgreSQL kept busy meanwhile: the CPU its writes took from the model's threads)."""
    from django.test.utils import override_settings

    from queue_admin.worker import QueueWorker

    common.empty_tables()
    common.set_batch_size(batch_size)
    watch = CpuWatch().start()
    started = time.perf_counter()
    common.insert_documents(documents)
    # As in production: with DEBUG on, Django's debug cursor formats and keeps every statement.
    with override_settings(DEBUG=False), QueueWorker(provider, name="bench-pipeline") as worker:
        worker.run(until_empty=True)
    elapsed = time.perf_counter() - started
    watch.stop()
    postgres_cores = None if watch.postgres_s is None else watch.postgres_s / watch.seconds
    return len(documents) / elapsed, common.embedded_documents(), postgres_cores


def run(
    *, size: int | None, quick: bool, corpus_name: str, words_per_doc: int, device: str = "cpu"
) -> common.ScenarioResult:
    from documents.providers.local import LocalEmbeddingProvider, default_intra_op_threads

    count = size or (40 if quick else 2000)
    sweep_count = max(8, min(count, 16 if quick else 200))
    repeats = 2  # raw first, then pipeline first: each side once in each position
    on_gpu = device == "cuda"
    target_ratio = GPU_TARGET_RATIO if on_gpu else TARGET_RATIO
    documents = corpus.documents_for(corpus_name, count + qcluster_driver.WARM_UP_DOCUMENTS, words_per_doc)
    documents, warm_up = documents[:count], documents[count:]
    provider = (
        LocalEmbeddingProvider(device=device, sub_batch_size=GPU_SUB_BATCH_SIZE)
        if on_gpu
        else LocalEmbeddingProvider()
    )
    threads = provider.intra_op_threads
    result = common.ScenarioResult(
        "pipeline",
        corpus.describe(corpus_name, count, words_per_doc),
        {
            "documents": count,
            "queue_batch_size": DEFAULT_BATCH_SIZE,
            "provider_call_size": provider.max_batch_size,
            "provider_sub_batch_size": provider.sub_batch_size,
            "intra_op_threads": threads,
            "repeats": repeats,
            "sweep_documents": sweep_count,
            "model": provider.model_id,
            "device": device,
        },
    )

    load_started = time.perf_counter()
    provider.embed([doc["content"] for doc in documents[:8]])  # load + warm up: not throughput
    result.add("model_load_s", "model load + warm-up (excluded)", time.perf_counter() - load_started, "s")

    groups = chunk_groups(provider, documents, DEFAULT_BATCH_SIZE)
    chunks = sum(len(g) for g in groups)
    result.parameters["chunks"] = chunks
    raw_rates, pipeline_rates, postgres_busy = [], [], []
    for repeat in range(repeats):
        # Alternate the order so a slow spell on the shared machine does not favour one side.
        order = ("raw", "pipeline") if repeat % 2 == 0 else ("pipeline", "raw")
        for side in order:
            if side == "raw":
                raw_rates.append(raw_docs_per_second(provider, groups, count))
            else:
                rate, embedded, postgres_cores = pipeline_docs_per_second(
                    provider, documents, DEFAULT_BATCH_SIZE
                )
                pipeline_rates.append(rate)
                if postgres_cores is not None:
                    postgres_busy.append(postgres_cores)
                if embedded != count:
                    result.notes.append(
                        f"pipeline pass {repeat + 1}: {embedded} of {count} documents embedded"
                    )
    raw = common.median(raw_rates)
    pipe = common.median(pipeline_rates)
    ratio = pipe / raw if raw else 0.0
    result.metrics["raw_rates"] = raw_rates
    result.metrics["pipeline_rates"] = pipeline_rates
    where = "on the GPU (CUDA)" if on_gpu else f"{threads} threads"
    result.add("raw_docs_per_s", f"raw model, {where} (median of {repeats})", raw, "docs/s")
    result.add(
        "pipeline_docs_per_s", f"pipeline, batch {DEFAULT_BATCH_SIZE} (median of {repeats})", pipe, "docs/s"
    )
    result.add("ratio", "pipeline / raw", ratio, "ratio", f">= {target_ratio}", ratio >= target_ratio)
    if postgres_busy:
        # The raw model has every core; in the pipeline PostgreSQL (the HNSW insert above all)
        # takes this much of them while the model runs.
        busy = common.median(postgres_busy)
        result.add(
            "pipeline_postgres_cores",
            f"pipeline: cores of {os.cpu_count()} PostgreSQL kept busy (median), the model had the rest",
            busy,
            "cores",
        )
    if on_gpu:
        result.notes.append(
            "qcluster pass skipped: the cluster builds its provider from settings, on the CPU"
        )
    else:
        common.set_batch_size(DEFAULT_BATCH_SIZE)
        common.set_config("max_concurrent_workers", 1)  # one drain, all cores: as process_queue and raw
        try:
            cluster_rate = qcluster_driver.qcluster_docs_per_second(documents, warm_up)
        finally:
            common.set_config("max_concurrent_workers", 2)
        cluster_ratio = cluster_rate / raw if raw else 0.0
        result.add(
            "qcluster_docs_per_s",
            f"pipeline through qcluster, batch {DEFAULT_BATCH_SIZE}",
            cluster_rate,
            "docs/s",
        )
        result.add("qcluster_ratio", "qcluster / raw", cluster_ratio, "ratio", f">= {TARGET_RATIO}",
                   cluster_ratio >= TARGET_RATIO)  # fmt: skip

    sweep_docs = documents[:sweep_count]
    for batch_size in GPU_SWEEP_BATCH_SIZES if on_gpu else SWEEP_BATCH_SIZES:
        rate, _, _ = pipeline_docs_per_second(provider, sweep_docs, batch_size)
        result.add(
            f"pipeline_batch_{batch_size}_docs_per_s", f"pipeline, queue batch {batch_size}", rate, "docs/s"
        )
    common.set_batch_size(DEFAULT_BATCH_SIZE)
    sweep_groups = chunk_groups(provider, sweep_docs, DEFAULT_BATCH_SIZE)
    for n_threads in () if on_gpu else SWEEP_THREADS:
        threaded = LocalEmbeddingProvider(intra_op_threads=n_threads)
        threaded.embed([doc["content"] for doc in sweep_docs[:8]])
        rate = raw_docs_per_second(threaded, sweep_groups, sweep_count)
        result.add(
            f"raw_threads_{n_threads}_docs_per_s", f"raw model, {n_threads} intra-op threads", rate, "docs/s"
        )
    result.parameters["cpus_available"] = default_intra_op_threads()
    common.empty_tables()
    return result
