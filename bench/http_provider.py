"""Scenario `http`: the pipeline against a remote embedding API that takes a fixed 50 ms.

A local OpenAI-compatible server (bench/embedding_server.py, its own process) answers every
request after 50 ms with deterministic vectors. The workers are the real thing: the `openai`
provider over HTTP, with the shared rate limits and circuit breaker of every remote provider
(the quotas set far above what is reached, so they cost their round trips but never wait).
For each concurrency (worker processes: 1, 4, 16, one request in flight each; then one worker
process with the `openai` provider's default of four requests in flight), the documents are
inserted, the workers released together, and the queue drained at queue batch 32 = one request
of 32 texts.

Ideal: requests in flight × 32 / 0.05 s documents per second; target 0.9 of it "until a core
saturates", and for one worker 0.9 × 640 whatever its requests in flight. So next to docs/s it reports the CPU each party used (workers, PostgreSQL, the
fake server, and the whole machine, other people's load included) as busy cores.
"""

import subprocess
import sys

from bench import common, corpus
from bench.processes import ROOT, production_environment, run_workers
from bench.profiling import WORKER_PHASES, profile_worker, summary

LATENCY_SECONDS = 0.05
BATCH_SIZE = 32
CONCURRENCY = (1, 4, 16)
# (worker processes, requests in flight each): one in flight at each concurrency, then one
# worker at the openai provider's default (queue_admin.config_schema: requests_in_flight).
RUNS = (*((concurrency, 1) for concurrency in CONCURRENCY), (1, 4))
TARGET_SHARE = 0.9
MODEL = "bench-fixed-latency-embedder"
PHASES = {
    **WORKER_PHASES,
    "provider request (HTTP, its 50 ms included)": [("openai.py", "embed")],
    "shared rate limit and breaker": [
        ("limits.py", "wait_for_capacity"),
        ("limits.py", "breaker_allows"),
        ("limits.py", "record_success"),
    ],
    "worker metrics": [("worker_metrics.py", "flush")],
}


def start_server() -> tuple[subprocess.Popen, int]:
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.embedding_server", "--latency", str(LATENCY_SECONDS)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = server.stdout.readline().split()
    if line[:1] != ["listening"]:
        server.kill()
        raise RuntimeError(f"the fake embedding server did not start (said {' '.join(line)!r})")
    return server, int(line[1])


def stop_server(server: subprocess.Popen) -> tuple[int, int, float]:
    """(requests, texts, CPU seconds) the server reports as it stops."""
    out, _ = server.communicate(timeout=30)
    words = out.split()
    return int(words[1]), int(words[2]), float(words[3])


def run(*, size: int | None, quick: bool, corpus_name: str, words_per_doc: int) -> common.ScenarioResult:
    count = size or (160 if quick else 4000)
    documents = corpus.documents_for(corpus_name, count, words_per_doc)
    result = common.ScenarioResult(
        "http",
        corpus.describe(corpus_name, count, words_per_doc),
        {
            "documents": count,
            "provider": "openai (OpenAI-compatible POST /v1/embeddings over HTTP on loopback)",
            "server": f"bench/embedding_server.py, fixed {LATENCY_SECONDS * 1000:.0f} ms per request",
            "queue_batch_size": BATCH_SIZE,
            "texts_per_request": BATCH_SIZE,
            "concurrency": list(CONCURRENCY),
            "runs": [f"{c} worker(s) x {lanes} in flight" for c, lanes in RUNS],
            "workers": "worker processes (bench.worker_process), DEBUG off",
        },
    )
    common.set_batch_size(BATCH_SIZE)
    common.set_config("api_quota_per_minute", 1_000_000)
    common.set_config("token_quota_per_minute", 1_000_000_000)
    for concurrency, lanes in RUNS:
        common.set_config("requests_in_flight", lanes)
        key = f"c{concurrency}" if lanes == 1 else f"c{concurrency}_inflight{lanes}"
        label = f"concurrency {concurrency}" + (f", {lanes} in flight" if lanes > 1 else "")
        server, port = start_server()
        try:
            env = production_environment(
                EMBEDDING_PROVIDER="openai",
                EMBEDDING_BASE_URL=f"http://127.0.0.1:{port}/v1",
                EMBEDDING_MODEL=MODEL,
                EMBEDDING_BATCH_SIZE=str(BATCH_SIZE),
            )
            common.empty_tables()
            common.insert_documents(documents)
            run = run_workers(concurrency, embedder="configured", env=env)
        finally:
            requests, texts, server_cpu = stop_server(server)
        embedded = common.embedded_documents()
        if run.completed != count or embedded != count:
            result.notes.append(f"{label}: {run.completed} completed, {embedded} embedded of {count}")
        rate = count / run.seconds
        ideal = concurrency * lanes * BATCH_SIZE / LATENCY_SECONDS
        # One worker: 0.9 × one request's worth (640 docs/s), however many it keeps in flight.
        target = TARGET_SHARE * (ideal if lanes == 1 else concurrency * BATCH_SIZE / LATENCY_SECONDS)
        cores = {
            "workers": run.cores(run.worker_cpu_s),
            "postgres": run.cores(run.cpu.postgres_s),
            "server": run.cores(server_cpu),
            "machine": run.cores(run.cpu.machine_busy_s),
        }
        result.add(
            f"{key}_docs_per_s", f"{label}, batch {BATCH_SIZE}", rate, "docs/s",
            f">= {target:,.0f}", rate >= target,
        )  # fmt: skip
        result.add(f"{key}_share_of_ideal", f"{label}: share of ideal", rate / ideal, "ratio")
        result.add(f"{key}_machine_busy_cores", f"{label}: machine busy", cores["machine"], "cores")
        for who, value in cores.items():
            result.metrics[f"{key}_{who}_cores"] = value
        result.metrics[f"{key}_requests"] = requests
        result.metrics[f"{key}_texts_per_request"] = texts / requests if requests else 0.0
        result.notes.append(
            f"{label}: {rate:,.0f} docs/s of an ideal {ideal:,.0f} ({rate / ideal:.0%}); "
            f"{requests} requests of {texts / max(requests, 1):.1f} texts; busy cores: "
            + ", ".join(f"{who} {value:.2f}" for who, value in cores.items() if value is not None)
            + f" (of {common.cores()})"
        )
    common.set_config("requests_in_flight", 1)  # the profile is of one batch after another
    profile_one_worker(result, documents[: min(count, 96 if quick else 960)])
    compare_encodings(result, [doc["content"] for doc in documents[: min(count, 320 if quick else 3200)]])
    common.empty_tables()
    common.unset_config("requests_in_flight")
    return result


ENCODING_ROUNDS = 3


def compare_encodings(result: common.ScenarioResult, texts: list[str]) -> None:
    """The provider's own CPU per document (this process: request, response read, decode) with
    vectors as base64 and as lists of floats, alternated, same server, same texts."""
    import time

    from documents.providers.openai import OpenAIEmbeddingProvider

    server, port = start_server()
    cpu_ms: dict[str, list[float]] = {"base64": [], "float": []}
    try:
        provider = OpenAIEmbeddingProvider(
            f"http://127.0.0.1:{port}/v1", None, MODEL, 384, max_batch_size=BATCH_SIZE
        )
        provider.embed(texts[:BATCH_SIZE])  # connect and warm up
        for _ in range(ENCODING_ROUNDS):
            for encoding in ("base64", "float"):
                provider.encoding_format = encoding
                started = time.process_time()
                for start in range(0, len(texts), BATCH_SIZE):
                    provider.embed(texts[start : start + BATCH_SIZE])
                cpu_ms[encoding].append((time.process_time() - started) * 1000 / len(texts))
    finally:
        stop_server(server)
    as_base64, as_float = common.median(cpu_ms["base64"]), common.median(cpu_ms["float"])
    result.add(
        "client_cpu_base64_ms_per_doc", "the provider's CPU per document, base64 vectors", as_base64, "ms"
    )
    result.add(
        "client_cpu_float_ms_per_doc", "the provider's CPU per document, lists of floats", as_float, "ms"
    )
    result.add(
        "client_cpu_base64_vs_float", "base64 / float, provider CPU (same run)", as_base64 / as_float, "ratio"
    )


def profile_one_worker(result: common.ScenarioResult, documents: list[dict]) -> None:
    """Concurrency 1 in-process under cProfile: what a batch does besides waiting for the API."""
    from documents.providers.openai import OpenAIEmbeddingProvider

    server, port = start_server()
    try:
        provider = OpenAIEmbeddingProvider(
            f"http://127.0.0.1:{port}/v1", None, MODEL, 384, max_batch_size=BATCH_SIZE
        )
        phases, top, total = profile_worker(provider, documents, PHASES)
    finally:
        stop_server(server)
    batches = -(-len(documents) // BATCH_SIZE)
    result.metrics["profile_total_s"] = total
    result.metrics["profile_phases_s"] = phases
    result.metrics["profile_top10_tottime"] = top
    result.add(
        "profile_ms_per_batch", "concurrency 1 under cProfile: time per batch", total / batches * 1000, "ms"
    )
    result.notes.append(
        f"profile of 1 in-process worker, {len(documents)} documents ({batches} batches), {total:.2f} s "
        f"under cProfile: {summary(phases, total)}"
    )
