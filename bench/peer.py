"""Scenario `peer`: Sidecar against the pgai vectorizer worker, on equal terms, in one run.

    python -m bench peer [--size N] [--quick]

Not in the default list (`make bench`): the first run installs the peer, with network access,
into a throwaway virtual environment of its own (.data/peer-venv, `pgai[vectorizer-worker]`
at PEER_VERSION; its worker extra brings docling and torch: a few GB, minutes), never into
Sidecar's .venv. Later runs reuse it.

Both sides embed the same N documents (5,000 synthetic ones of 120 words) through the same
OpenAI-compatible server (bench/embedding_server.py, its own process, 50 ms per request,
restarted for each run so its CPU is counted per run), writing into the same PostgreSQL (the
bench's own; pgai's catalog and source table live in a second database on that server,
PEER_DATABASE, created and dropped by the scenario). For each configuration the two take
turns (which goes first alternates), ROUNDS times each; the figures are medians:

- `batch50`: batch 50, one request in flight, no vector index on either side (pgai: processing
  batch 50, concurrency 1, no chunking; Sidecar: queue batch 50, one worker process);
- `best`: the best setting found for each: batch 512 with four in flight (pgai: concurrency 4
  in its one process; Sidecar: four worker processes), no index;
- `defaults`: as shipped. pgai: `create_vectorizer` with only what it requires (loading from
  the column, the openai embedding) — its default chunking (recursive splitter, 800
  characters, 400 overlap), batch 50, concurrency 1, no index below 100,000 rows. Sidecar:
  what the `openai` provider gets when nobody set them (queue batch 256, four requests in
  flight per worker), `max_concurrent_workers` (2) worker processes, the provider's own
  request size, the index policy's default (no HNSW index below VECTOR_INDEX_MIN_ROWS).

In `batch50` and `best` every Sidecar worker process keeps one request in flight, as each of
the peer's concurrent tasks does. Each round of those two also times a **bare client**: the
same requests (the same batches, as many in flight) from threads of the bench's own process
with httpx, base64 answers decoded with numpy, and no database at all. No worker can go
faster than that against this server on this machine, so it is the bound both sides are
measured against, and it says whether a target ratio is reachable at all.

Sidecar's provider quotas (requests and tokens per minute) are set out of reach in every
configuration: they are the operator's copy of a provider account's limits, which the bench
server does not have, and pgai has no such setting. The time runs from releasing the workers
(started, imported and connected beforehand) until the last one exits its drain. CPU per
document by party: the workers (their own getrusage), PostgreSQL (the whole server: only one
side runs at a time), the server.

When the peer cannot be installed or run, the scenario says why in its notes and reports no
figure for it.
"""

import base64
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import numpy as np

from bench import common, corpus
from bench.http_provider import LATENCY_SECONDS, MODEL, start_server, stop_server
from bench.processes import ROOT, production_environment, run_workers

PEER_VERSION = "0.12.1"
PEER_REQUIREMENT = f"pgai[vectorizer-worker]=={PEER_VERSION}"
PEER_VENV = ROOT / ".data" / "peer-venv"
PEER_PYTHON = PEER_VENV / "bin" / "python"
PEER_DATABASE = "sidecar_bench_peer"
PEER_INSTALL_TIMEOUT_SECONDS = 1800
DIMENSIONS = 384
ROUNDS = 3
TARGET_RATIO = 1.5


@dataclass(frozen=True)
class Setting:
    batch: int | None  # None: the side's default
    in_flight: int | None  # pgai: its concurrency; Sidecar: worker processes


@dataclass(frozen=True)
class Configuration:
    key: str
    label: str
    pgai: Setting
    sidecar: Setting
    as_shipped: bool = False


CONFIGURATIONS = (
    Configuration("batch50", "batch 50, one in flight, no index", Setting(50, 1), Setting(50, 1)),
    # The best found for both, in one pass over batch 256–1000 and 2–4 in flight at 5,000
    # documents (the peer's concurrency allows up to 10; two cores leave no gain past 4).
    Configuration("best", "batch 512, four in flight, no index", Setting(512, 4), Setting(512, 4)),
    Configuration(
        "defaults", "as shipped, each side's defaults", Setting(None, None), Setting(None, None), True
    ),
)


def run(*, size: int | None, quick: bool, corpus_name: str, words_per_doc: int) -> common.ScenarioResult:
    count = size or (200 if quick else 5000)
    rounds = 1 if quick else ROUNDS
    documents = corpus.documents_for(corpus_name, count, words_per_doc)
    result = common.ScenarioResult(
        "peer",
        corpus.describe(corpus_name, count, words_per_doc),
        {
            "documents": count,
            "peer": PEER_REQUIREMENT,
            "peer_environment": str(PEER_VENV.relative_to(ROOT)),
            "server": f"bench/embedding_server.py, fixed {LATENCY_SECONDS * 1000:.0f} ms per request",
            "rounds": rounds,
            "configurations": {c.key: c.label for c in CONFIGURATIONS},
        },
    )
    error = ensure_peer_environment()
    if error:
        result.notes.append(f"the peer cannot run, so no comparison: {error}")
        return result
    peer_url = create_peer_database()
    try:
        error = install_peer_catalog(peer_url)
        if error:
            result.notes.append(f"the peer cannot run, so no comparison: {error}")
            return result
        common.set_config("api_quota_per_minute", 1_000_000)
        common.set_config("token_quota_per_minute", 1_000_000_000)
        for configuration in CONFIGURATIONS:
            measure(result, configuration, documents, rounds, peer_url)
    finally:
        drop_peer_database()
        reset_sidecar_config()
        common.empty_tables()
    return result


def measure(result, configuration: Configuration, documents: list[dict], rounds: int, peer_url: str) -> None:
    runs: dict[str, list[dict]] = {"pgai": [], "sidecar": []}
    bound: list[float] = []  # the bare client's docs/s, one per round
    for round_number in range(rounds):
        order = ("pgai", "sidecar") if round_number % 2 == 0 else ("sidecar", "pgai")
        for side in order:
            if side == "pgai":
                runs[side].append(run_pgai(configuration, documents, peer_url))
            else:
                runs[side].append(run_sidecar(configuration, documents))
        if not configuration.as_shipped:  # the two sides' settings differ there: no one bound
            bound.append(run_bare_client(configuration.sidecar, documents))
    key, count = configuration.key, len(documents)
    rates = {side: statistics.median(r["docs_per_s"] for r in side_runs) for side, side_runs in runs.items()}
    ratio = rates["sidecar"] / rates["pgai"]
    result.add(f"{key}_pgai_docs_per_s", f"{configuration.label}: pgai", rates["pgai"], "docs/s")
    result.add(f"{key}_sidecar_docs_per_s", f"{configuration.label}: Sidecar", rates["sidecar"], "docs/s")
    result.add(
        f"{key}_ratio", f"{configuration.label}: Sidecar / pgai", ratio, "ratio",
        f">= {TARGET_RATIO}", ratio >= TARGET_RATIO,
    )  # fmt: skip
    if bound:
        report_bound(result, configuration, rates, bound)
    for side, side_runs in runs.items():
        cpu = {
            party: statistics.median(r["cpu_ms_per_doc"][party] for r in side_runs)
            for party in ("worker", "postgres", "server")
        }
        for party, value in cpu.items():
            result.metrics[f"{key}_{side}_{party}_cpu_ms_per_doc"] = value
        result.metrics[f"{key}_{side}_all_docs_per_s"] = [r["docs_per_s"] for r in side_runs]
        last = side_runs[-1]
        result.notes.append(
            f"{configuration.label}, {side} ({last['setting']}): "
            + ", ".join(f"{r['docs_per_s']:,.0f}" for r in side_runs)
            + f" docs/s; CPU per document worker / PostgreSQL / server {cpu['worker']:.2f} / "
            f"{cpu['postgres']:.2f} / {cpu['server']:.2f} ms; {last['requests']} requests of "
            f"{last['texts'] / max(last['requests'], 1):.1f} texts, {last['vectors'] / count:.2f} vectors "
            "per document"
        )
        for r in side_runs:
            if r["embedded"] != count:
                result.notes.append(
                    f"{configuration.label}, {side}: {r['embedded']} of {count} documents embedded"
                )


def run_sidecar(configuration: Configuration, documents: list[dict]) -> dict:
    from documents import vector_index
    from queue_admin.config_schema import DEFAULTS, SCHEMA

    setting = configuration.sidecar
    workers = setting.in_flight or DEFAULTS["max_concurrent_workers"]
    if configuration.as_shipped:
        # Unset, so the worker processes (EMBEDDING_PROVIDER=openai) read the provider's defaults.
        reset_sidecar_config(("batch_size", "requests_in_flight"))
        batch = SCHEMA["batch_size"].by_provider["openai"]
        lanes = SCHEMA["requests_in_flight"].by_provider["openai"]
    else:
        batch, lanes = setting.batch, 1
        common.set_batch_size(batch)
        common.set_config("requests_in_flight", lanes)
    server, port = start_server()
    try:
        overrides = {
            "EMBEDDING_PROVIDER": "openai",
            "EMBEDDING_BASE_URL": f"http://127.0.0.1:{port}/v1",
            "EMBEDDING_MODEL": MODEL,
        }
        if not configuration.as_shipped:  # one request per queue batch
            overrides["EMBEDDING_BATCH_SIZE"] = str(batch)
        common.empty_tables()
        vector_index.drop(MODEL)  # none is built below VECTOR_INDEX_MIN_ROWS; none left from elsewhere
        common.insert_documents(documents)
        run = run_workers(workers, embedder="configured", env=production_environment(**overrides))
    finally:
        requests, texts, server_cpu = stop_server(server)
    from documents.models import DocumentEmbedding

    return _figures(
        len(documents), run, server_cpu, requests, texts,
        embedded=common.embedded_documents(),
        vectors=DocumentEmbedding.objects.filter(model=MODEL).count(),
        setting=f"queue batch {batch}, {workers} worker process{'es' if workers > 1 else ''}, "
        f"{lanes} request{'s' if lanes > 1 else ''} in flight each",
    )  # fmt: skip


def report_bound(result, configuration: Configuration, rates: dict[str, float], bound: list[float]) -> None:
    """The bare client's figure, each side's share of it, and whether the target was reachable."""
    key, ceiling = configuration.key, statistics.median(bound)
    result.add(
        f"{key}_bare_client_docs_per_s",
        f"{configuration.label}: a bare HTTP client, no database (the bound for both)",
        ceiling, "docs/s",
    )  # fmt: skip
    result.add(
        f"{key}_bound_over_pgai", f"{configuration.label}: bound / pgai", ceiling / rates["pgai"], "ratio"
    )
    result.metrics[f"{key}_bare_client_all_docs_per_s"] = bound
    for side in ("pgai", "sidecar"):
        result.metrics[f"{key}_{side}_share_of_bound"] = rates[side] / ceiling
    result.notes.append(
        f"{configuration.label}, bare client: " + ", ".join(f"{rate:,.0f}" for rate in bound)
        + f" docs/s; pgai reaches {rates['pgai'] / ceiling:.0%} of it, Sidecar {rates['sidecar'] / ceiling:.0%}"
    )  # fmt: skip
    if ceiling < TARGET_RATIO * rates["pgai"]:
        result.notes.append(
            f"{configuration.label}: {TARGET_RATIO} x pgai ({TARGET_RATIO * rates['pgai']:,.0f} docs/s) is above "
            f"what a client with no database reaches against this server ({ceiling:,.0f}): out of reach here"
        )


def run_bare_client(setting: Setting, documents: list[dict]) -> float:
    """Docs/s of the same requests with nothing else to do: `setting.batch` texts each,
    `setting.in_flight` at a time, base64 answers decoded as the openai provider does."""
    texts = [doc["content"] for doc in documents]
    batches = [texts[start : start + setting.batch] for start in range(0, len(texts), setting.batch)]
    server, port = start_server()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=60) as client:

            def send(batch: list[str]) -> int:
                response = client.post(
                    "/embeddings", json={"model": MODEL, "input": batch, "encoding_format": "base64"}
                )
                response.raise_for_status()
                vectors = [
                    np.frombuffer(base64.b64decode(row["embedding"]), dtype="<f4")
                    for row in response.json()["data"]
                ]
                return sum(vector.shape == (DIMENSIONS,) for vector in vectors)

            started = time.perf_counter()
            with ThreadPoolExecutor(setting.in_flight) as pool:
                answered = sum(pool.map(send, batches))
            seconds = time.perf_counter() - started
    finally:
        stop_server(server)
    if answered != len(texts):
        raise RuntimeError(f"the bare client got {answered} vectors of {DIMENSIONS} for {len(texts)} texts")
    return len(texts) / seconds


def run_pgai(configuration: Configuration, documents: list[dict], peer_url: str) -> dict:
    import psycopg

    setting = configuration.pgai
    server, port = start_server()
    try:
        with psycopg.connect(peer_url, autocommit=True) as conn:
            reset_peer_tables(conn)
            with conn.cursor().copy("COPY bench_documents (title, content) FROM STDIN") as copy:
                for doc in documents:
                    copy.write_row((doc["title"], doc["content"]))
            # create_vectorizer queues every existing row (enqueue_existing), as an insert would.
            conn.execute(create_vectorizer_sql(configuration, f"http://127.0.0.1:{port}/v1"))
        command = [str(PEER_PYTHON), "-m", "bench.peer_worker", "--db-url", peer_url]
        if setting.in_flight:
            command += ["--concurrency", str(setting.in_flight)]
        env = {**os.environ, "OPENAI_API_KEY": "bench-not-a-key", "PYTHONPATH": str(ROOT)}
        run = run_workers(1, command=command, env=env)
    finally:
        requests, texts, server_cpu = stop_server(server)
    with psycopg.connect(peer_url) as conn:
        embedded, vectors = conn.execute(
            "SELECT count(DISTINCT id), count(*) FROM bench_documents_embedding_store"
        ).fetchone()
    return _figures(
        len(documents), run, server_cpu, requests, texts, embedded=embedded, vectors=vectors,
        setting=(
            f"processing batch {setting.batch}, concurrency {setting.in_flight}"
            if not configuration.as_shipped else "create_vectorizer's defaults"
        ),
    )  # fmt: skip


def create_vectorizer_sql(configuration: Configuration, base_url: str) -> str:
    embedding = f"ai.embedding_openai('{MODEL}', {DIMENSIONS}, base_url => '{base_url}')"
    if configuration.as_shipped:
        return f"SELECT ai.create_vectorizer('bench_documents'::regclass, loading => ai.loading_column('content'), embedding => {embedding})"
    setting = configuration.pgai
    # One chunk per document, as Sidecar's texts that fit the model: the same vectors either side.
    return (
        "SELECT ai.create_vectorizer('bench_documents'::regclass, loading => ai.loading_column('content'), "
        f"embedding => {embedding}, chunking => ai.chunking_none(), indexing => ai.indexing_none(), "
        f"processing => ai.processing_default(batch_size => {setting.batch}, concurrency => {setting.in_flight}))"
    )


def reset_peer_tables(conn) -> None:
    """No vectorizer, an empty source table: each run starts from nothing, as Sidecar's do."""
    conn.execute("SELECT ai.drop_vectorizer(id, drop_all => true) FROM ai.vectorizer")
    conn.execute("DROP TABLE IF EXISTS bench_documents")
    conn.execute(
        "CREATE TABLE bench_documents (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), title text NOT NULL, "
        "content text NOT NULL)"
    )


def _figures(count, run, server_cpu, requests, texts, *, embedded, vectors, setting) -> dict:
    per_doc = 1000 / count
    return {
        "docs_per_s": count / run.seconds,
        "cpu_ms_per_doc": {
            "worker": run.worker_cpu_s * per_doc,
            "postgres": (run.cpu.postgres_s or 0.0) * per_doc,
            "server": server_cpu * per_doc,
        },
        "requests": requests,
        "texts": texts,
        "embedded": embedded,
        "vectors": vectors,
        "setting": setting,
    }


def ensure_peer_environment() -> str | None:
    """Install the peer into its own virtual environment unless it is there; why not, or None."""
    if _peer_version() == PEER_VERSION:
        return None
    print(f"  installing {PEER_REQUIREMENT} into {PEER_VENV} (once; needs the network) …", flush=True)
    try:
        if not PEER_PYTHON.exists():
            subprocess.run(
                [sys.executable, "-m", "venv", "--clear", str(PEER_VENV)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
        subprocess.run(
            [str(PEER_PYTHON), "-m", "pip", "install", "--quiet", PEER_REQUIREMENT],
            check=True, capture_output=True, text=True, timeout=PEER_INSTALL_TIMEOUT_SECONDS,
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        return f"installing {PEER_REQUIREMENT} failed: {_tail(exc.stderr or exc.stdout)}"
    except subprocess.TimeoutExpired:
        return f"installing {PEER_REQUIREMENT} took more than {PEER_INSTALL_TIMEOUT_SECONDS} s"
    found = _peer_version()
    return (
        None
        if found == PEER_VERSION
        else f"{PEER_VENV} has pgai {found or 'not importable'}, not {PEER_VERSION}"
    )


def _peer_version() -> str | None:
    if not PEER_PYTHON.exists():
        return None
    probe = subprocess.run(
        [str(PEER_PYTHON), "-c", "import pgai, pgai.vectorizer; print(pgai.__version__)"],
        capture_output=True, text=True,
    )  # fmt: skip
    return probe.stdout.strip() if probe.returncode == 0 else None


def _tail(text: str, lines: int = 5) -> str:
    """The last lines of a command's output, pip's warnings left out (a machine's pip config can
    print one per package, burying the error)."""
    kept = [line.strip() for line in text.strip().splitlines() if not line.startswith("WARNING:")]
    return " | ".join(kept[-lines:])


def _admin_connection():
    """A connection to the bench's database in autocommit, for CREATE and DROP DATABASE."""
    import psycopg
    from django.db import connection

    connection.ensure_connection()
    return psycopg.connect(**_connection_parameters(connection.settings_dict["NAME"]), autocommit=True)


def _connection_parameters(dbname: str) -> dict:
    from django.db import connection

    params = {
        k: v
        for k, v in connection.get_connection_params().items()
        if k in ("host", "port", "user", "password")
    }
    return {**{k: v for k, v in params.items() if v}, "dbname": dbname}


def create_peer_database() -> str:
    """A second database on the bench's server for pgai's catalog and source table; its URL."""
    from psycopg import conninfo, sql

    drop_peer_database()
    with _admin_connection() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PEER_DATABASE)))
    return conninfo.make_conninfo(**_connection_parameters(PEER_DATABASE))


def drop_peer_database() -> None:
    from psycopg import sql

    with _admin_connection() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(PEER_DATABASE)))


def install_peer_catalog(peer_url: str) -> str | None:
    """`pgai install`: pgai's `ai` schema (vectorizer catalog, queue functions) into the peer's
    database; why it failed, or None."""
    install = subprocess.run(
        [str(PEER_VENV / "bin" / "pgai"), "install", "--db-url", peer_url],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if install.returncode != 0:
        return f"`pgai install` exited {install.returncode}: {_tail(install.stderr + install.stdout)}"
    return None


def reset_sidecar_config(
    keys=("batch_size", "requests_in_flight", "api_quota_per_minute", "token_quota_per_minute"),
) -> None:
    """Back to the shipped queue settings (unset: the defaults) for what follows."""
    for key in keys:
        common.unset_config(key)
