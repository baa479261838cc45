"""What every chaos suite shares: worker processes to start, kill and stop; documents to load and
change; queue settings; the end-state checks.

Runs in a process where Django is set up against the database the workers use (a pytest-django
test database, or the chaos runner's own embedded PostgreSQL): it reads and writes through
Django's connection and hands its URL to the workers.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.helpers import ROOT, database_url

MODEL = "chaos-fake-model"
WORDS = (
    "queue lease worker vector chunk model batch retry breaker quota postgres index document "
    "embedding trigger commit crash restart signal shutdown outage storm recovery sidecar"
).split()


def sql(statement: str, params=None):
    """Run one statement through Django's connection; rows if it returns any, else the row count."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else cursor.rowcount


def set_queue_settings(**values) -> None:
    """Write queue settings (validated as the admin would) and drop this process's cached copy."""
    from queue_admin import config
    from queue_admin.models import QueueConfig

    for key, value in values.items():
        config.validate_value(key, value)
        QueueConfig.objects.update_or_create(config_key=key, defaults={"config_value": value})
    config.forget_cached()


def reset_database() -> None:
    """Empty documents, sidecar, queue, registry, provider state, metrics and django-q2's queue;
    put every queue setting back to its default. The schedules stay."""
    from queue_admin import config

    sql(
        "TRUNCATE source_documents, document_embeddings, embedding_queue, embedding_queue_workers, "
        "embedding_provider_state, embedding_worker_metrics, django_q_ormq, django_q_task CASCADE"
    )
    sql("DELETE FROM embedding_queue_config")
    set_queue_settings(**config.DEFAULTS)


# Every suite also inserts POISONED documents longer than the workers' limit: each must end as
# exactly one dead letter, however often workers die and reconciliation runs meanwhile.
POISONED = 5
MAX_DOCUMENT_CHARACTERS = 1_000
RECONCILE_EVERY_SECONDS = 2.0


def worker_environment(embedder_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "EMBEDDED_DB", "EMBEDDING_"))}
    env.update(
        DATABASE_URL=database_url(),
        DEBUG="1",
        LOG_FORMAT="console",
        EMBEDDING_PROVIDER="openai",
        EMBEDDING_BASE_URL=embedder_url,
        EMBEDDING_MODEL=MODEL,
        EMBEDDING_BATCH_SIZE="32",
        Q_WORKERS="2",
        EMBEDDING_MAX_DOCUMENT_CHARACTERS=str(MAX_DOCUMENT_CHARACTERS),
    )
    env.update(extra)
    return env


COMMANDS = {
    "qcluster": ["manage.py", "qcluster"],
    "process_queue": ["manage.py", "process_queue"],
}


@dataclass
class Slot:
    """One worker place: which command runs there, the running process, how often it died."""

    kind: str
    process: subprocess.Popen | None = None
    starts: int = 0
    kills: int = 0
    logs: list[Path] = field(default_factory=list)


class Workers:
    """Worker processes, each in a session of its own so that a kill takes the whole process
    tree with it (a qcluster is a parent, a sentinel, a pusher, a monitor and its workers), as
    when a machine or container dies. Output goes to a log file per start, under `log_dir`."""

    def __init__(self, kinds: list[str], env: dict[str, str], log_dir: Path):
        self.slots = [Slot(kind) for kind in kinds]
        self.env = env
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, slot: Slot) -> None:
        slot.starts += 1
        log = self.log_dir / f"{slot.kind}-{self.slots.index(slot)}-{slot.starts}.log"
        slot.logs.append(log)
        with log.open("w") as output:
            slot.process = subprocess.Popen(
                [sys.executable, *COMMANDS[slot.kind]], cwd=ROOT, env=self.env,
                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def start_all(self) -> None:
        for slot in self.slots:
            self.start(slot)

    def kill(self, slot: Slot) -> None:
        """SIGKILL to the slot's whole process group: no handler runs, nothing is given back."""
        try:
            os.killpg(slot.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        slot.process.wait()
        slot.kills += 1

    def terminate(self, slot: Slot, timeout: float = 60) -> float:
        """SIGTERM to the main process only (as `docker stop` does); wait for the tree to end.
        Returns the seconds it took; SIGKILLs the group if it overstays `timeout`."""
        started = time.monotonic()
        if slot.process.poll() is None:
            slot.process.send_signal(signal.SIGTERM)
        try:
            slot.process.wait(timeout=timeout)
        finally:
            try:  # anything of the tree still alive (a wedged child) goes now
                os.killpg(slot.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return time.monotonic() - started

    def terminate_all(self, timeout: float = 60) -> list[float]:
        for slot in self.slots:
            if slot.process.poll() is None:
                slot.process.send_signal(signal.SIGTERM)
        return [self.terminate(slot, timeout) for slot in self.slots]

    def kill_all(self) -> None:
        for slot in self.slots:
            if slot.process is not None:
                self.kill(slot)

    def tracebacks(self) -> int:
        return sum(log.read_text(errors="replace").count("Traceback") for s in self.slots for log in s.logs)


def document_text(number: int, rng: random.Random) -> str:
    """A short unique document (one chunk): its number and 20–60 words."""
    return f"chaos document {number}: " + " ".join(rng.choices(WORDS, k=rng.randint(20, 60)))


def insert_documents(count: int, seed: int) -> list:
    """Insert `count` documents in one statement (the triggers queue them); returns their ids."""
    rng = random.Random(seed)
    texts = [document_text(n, rng) for n in range(count)]
    rows = sql(
        "INSERT INTO source_documents (title, content) SELECT 'chaos ' || n, t "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS x(t, n) RETURNING id",
        [texts],
    )
    return [row[0] for row in rows]


def insert_poisoned_documents(count: int = POISONED) -> list:
    """Documents over MAX_DOCUMENT_CHARACTERS, titled "poisoned N": the workers dead-letter them."""
    rows = sql(
        "INSERT INTO source_documents (title, content) SELECT 'poisoned ' || n, repeat('too long ' || n || ' ', %s) "
        "FROM generate_series(1, %s) n RETURNING id",
        [MAX_DOCUMENT_CHARACTERS // 9 + 1, count],
    )
    return [row[0] for row in rows]


class Reconciler:
    """Runs the reconciliation schedule's function every RECONCILE_EVERY_SECONDS while a suite
    runs, instead of every 5 minutes; `queued` sums what it queued (the triggers miss nothing
    here, and dead letters must not come back: it should stay 0)."""

    def __init__(self):
        self.runs = self.queued = 0
        self._next = time.monotonic()

    def maybe_run(self) -> None:
        from queue_admin import backfill

        if time.monotonic() >= self._next:
            self.queued += backfill.reconcile(MODEL)
            self.runs += 1
            self._next = time.monotonic() + RECONCILE_EVERY_SECONDS

    def figures(self) -> dict:
        return {"runs": self.runs, "queued": self.queued}


def edit_documents(ids: list, edit_round: int) -> int:
    """Append a marker to each text: a new, unique text the workers must embed again."""
    if not ids:
        return 0
    return sql(
        "UPDATE source_documents SET content = content || ' (edit ' || %s || ')' WHERE id = ANY(%s)",
        [edit_round, list(ids)],
    )


def delete_documents(ids: list) -> int:
    return sql("DELETE FROM source_documents WHERE id = ANY(%s)", [list(ids)]) if ids else 0


def retried_items() -> tuple[int, int]:
    """Items tried more than once (taken back after a kill, or retried after a fault), and the
    most attempts on one; poisoned documents left out (their one failed attempt counts too)."""
    return sql(
        """SELECT count(*) FILTER (WHERE q.retry_count > 0), coalesce(max(q.retry_count), 0)
             FROM embedding_queue q JOIN source_documents d ON d.id = q.document_id
            WHERE d.title NOT LIKE 'poisoned %%'"""
    )[0]


def queue_counts() -> dict[str, int]:
    return dict(sql("SELECT status, count(*) FROM embedding_queue GROUP BY status"))


def live_items() -> int:
    return sql(
        "SELECT count(*) FROM embedding_queue WHERE status IN ('pending', 'processing', 'rate_limited')"
    )[0][0]


def end_state(deleted_ids: list, model: str = MODEL) -> dict:
    """What the database holds at the end, as counts; every `problem_*` count must be 0.

    - problem_stale_or_missing: live documents with text whose chunks are missing, or not all
      of the current text's hash and the configured model;
    - problem_gaps: documents whose chunk indexes are not 0..n-1;
    - problem_wrong_vectors: chunks whose vector is not the fake model's vector of the chunk's
      text (written from another text, or mixed up between documents);
    - problem_other_model: chunk rows of another model;
    - problem_deleted_chunks: chunk rows of deleted documents (or of no document);
    - problem_processing / problem_failed / problem_waiting: queue items left processing,
      dead-lettered (of documents that are not poisoned), or still pending or rate-limited;
    - problem_poisoned_not_one_dead_letter: poisoned documents without exactly one failed item,
      or with any other item;
    - problem_dead_letters_beyond_one_per_document: failed items beyond one per document.
    """
    from tests.fault_server import fake_vector

    (stale_or_missing,) = sql(
        """SELECT count(*) FROM source_documents d
            WHERE btrim(d.content) <> '' AND d.title NOT LIKE 'poisoned %%'
              AND (NOT EXISTS (SELECT FROM document_embeddings e WHERE e.document_id = d.id AND e.model = %s)
                   OR EXISTS (SELECT FROM document_embeddings e WHERE e.document_id = d.id
                               AND (e.model <> %s OR e.document_text_hash <> md5(d.content))))""",
        [model, model],
    )[0]
    (gaps,) = sql(
        """SELECT count(*) FROM (SELECT document_id FROM document_embeddings GROUP BY document_id, model
                                  HAVING max(chunk_index) + 1 <> count(*)) g"""
    )[0]
    wrong_vectors = 0
    rows = sql("SELECT source_text, embedding::real[] FROM document_embeddings WHERE model = %s", [model])
    for text, vector in rows:
        if not np.allclose(np.asarray(vector, dtype=np.float32), fake_vector(text, len(vector)), atol=1e-6):
            wrong_vectors += 1
    statuses = queue_counts()
    (failed_not_poisoned,) = sql(
        """SELECT count(*) FROM embedding_queue q JOIN source_documents d ON d.id = q.document_id
            WHERE q.status = 'failed' AND d.title NOT LIKE 'poisoned %%'"""
    )[0]
    (poisoned_not_one_dead_letter,) = sql(
        """SELECT count(*) FROM source_documents d
            WHERE d.title LIKE 'poisoned %%'
              AND ((SELECT count(*) FROM embedding_queue q WHERE q.document_id = d.id AND q.status = 'failed') <> 1
                   OR EXISTS (SELECT FROM embedding_queue q WHERE q.document_id = d.id AND q.status <> 'failed'))"""
    )[0]
    (beyond_one,) = sql(
        "SELECT count(*) - count(DISTINCT document_id) FROM embedding_queue WHERE status = 'failed'"
    )[0]
    return {
        "documents": sql("SELECT count(*) FROM source_documents")[0][0],
        "chunks": len(rows),
        "items": dict(sorted(statuses.items())),
        "problem_stale_or_missing": stale_or_missing,
        "problem_gaps": gaps,
        "problem_wrong_vectors": wrong_vectors,
        "problem_other_model": sql("SELECT count(*) FROM document_embeddings WHERE model <> %s", [model])[0][
            0
        ],
        "problem_deleted_chunks": sql(
            """SELECT count(*) FROM document_embeddings e
                WHERE e.document_id = ANY(%s)
                   OR NOT EXISTS (SELECT FROM source_documents d WHERE d.id = e.document_id)""",
            [list(deleted_ids)],
        )[0][0],
        "dead_letters": statuses.get("failed", 0),
        "problem_processing": statuses.get("processing", 0),
        "problem_failed": failed_not_poisoned,
        "problem_poisoned_not_one_dead_letter": poisoned_not_one_dead_letter,
        "problem_dead_letters_beyond_one_per_document": beyond_one,
        "problem_waiting": statuses.get("pending", 0) + statuses.get("rate_limited", 0),
    }


def problems(state: dict) -> dict:
    """The end state's non-zero problem counts: {} when nothing was lost."""
    return {key: value for key, value in state.items() if key.startswith("problem_") and value}


def provider_work(requests) -> dict:
    """Inputs the fake server was sent, answered or not, against the distinct texts among them
    (each distinct text had to be embedded once): their ratio is the duplicate work."""
    sent = [text for request in requests for text in request.inputs]
    distinct = len(set(sent))
    return {
        "requests": len(requests),
        "inputs_sent": len(sent),
        "inputs_needed": distinct,
        "duplicate_ratio": round(len(sent) / distinct, 4) if distinct else 1.0,
        "most_sent": Counter(sent).most_common(1)[0][1] if sent else 0,
    }


def wait_until(condition, timeout: float, what: str, poll: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)
