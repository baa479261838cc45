"""Scenario `backfill`: a million documents already in the table, none embedded.

Steps: load N documents with set-based SQL (INSERT … SELECT generate_series, the enqueue
triggers off, as a bulk import that bypassed them would leave things), VACUUM ANALYZE; run
`manage.py backfill --dry-run` and then `manage.py backfill` as an operator would (their own
processes, DEBUG off): wall time and peak RSS of each (the command's own VmHWM). "Flat" RSS
means the enqueue's peak is the dry run's: the ids never come into Python. The backfill runs
at its default (two database sessions, each queueing a part), then once more, the queue
emptied, with `--parallel 1` (one statement): what the parts buy on this machine.

Then the trigger's cost: the table emptied, `COPY source_documents (title, content)` of N
rows with the enqueue trigger disabled, and again with it enabled (it queues all N in one
statement per COPY). The rows are formatted in memory beforehand, so the timing is the
server's.
"""

import time

from django.db import connection

from bench import common, dashboard
from bench.processes import CpuWatch, run_command

DEFAULT_SIZE = 1_000_000
QUICK_SIZE = 5_000
TARGET_ENQUEUE_SECONDS = 30.0
# Peak RSS of the enqueue within this much of the dry run's counts as flat.
FLAT_RSS_BYTES = 16 * 1024 * 1024
TRIGGER = "source_documents_enqueue_on_insert"


def load(size: int) -> float:
    """N documents, no queue items (triggers off for the load); returns seconds."""
    from django.db import connection, transaction

    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ALTER TABLE source_documents DISABLE TRIGGER USER")
        cursor.execute(dashboard.LOAD_DOCUMENTS, {"n": size})
        cursor.execute("ALTER TABLE source_documents ENABLE TRIGGER USER")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE source_documents, embedding_queue, document_embeddings")
    return time.perf_counter() - started


def copy_rows(size: int) -> bytes:
    """COPY's text format for N (title, content) rows, like LOAD_DOCUMENTS' texts."""
    return "".join(
        f"Copied {g}\tDocument {g} about refunds, shipping and the returns policy of order {g * 7919 % 100000}\n"
        for g in range(1, size + 1)
    ).encode()


def timed_copy(data: bytes, *, trigger: bool) -> float:
    """Empty the tables, then COPY the rows in with the enqueue trigger on or off; seconds."""
    from django.db import connection

    common.empty_tables()
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")  # each COPY starts with the same WAL state
        if not trigger:
            cursor.execute(f"ALTER TABLE source_documents DISABLE TRIGGER {TRIGGER}")
        try:
            started = time.perf_counter()
            with cursor.cursor.copy("COPY source_documents (title, content) FROM STDIN") as copy:
                for start in range(0, len(data), 1 << 20):
                    copy.write(data[start : start + (1 << 20)])
            seconds = time.perf_counter() - started
        finally:
            if not trigger:
                cursor.execute(f"ALTER TABLE source_documents ENABLE TRIGGER {TRIGGER}")
    return seconds


def queued() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM embedding_queue")
        return cursor.fetchone()[0]


def run(*, size: int | None, quick: bool, corpus_name: str, words_per_doc: int) -> common.ScenarioResult:
    size = size or (QUICK_SIZE if quick else DEFAULT_SIZE)
    result = common.ScenarioResult(
        "backfill",
        f"{size:,} generated documents of about 90 characters (INSERT … SELECT generate_series)",
        {"documents": size, "commands": "manage.py backfill --dry-run; manage.py backfill (DEBUG off)"},
    )
    common.empty_tables()
    result.metrics["load_s"] = load(size)

    dry_run = run_command(["manage.py", "backfill", "--dry-run"])
    watch = CpuWatch().start()
    enqueue = run_command(["manage.py", "backfill"])
    watch.stop()
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE embedding_queue")
        cursor.execute("CHECKPOINT")
    single_watch = CpuWatch().start()
    single = run_command(["manage.py", "backfill", "--parallel", "1"])
    single_watch.stop()
    for name, command in (("dry-run", dry_run), ("backfill", enqueue), ("backfill --parallel 1", single)):
        if command.returncode != 0:
            raise RuntimeError(f"manage.py {name} exited with {command.returncode}: {command.output[-2000:]}")
    result.metrics["dry_run_output"] = dry_run.output.strip()
    result.metrics["backfill_output"] = enqueue.output.strip()
    items = queued()
    if items != size:
        result.notes.append(f"backfill queued {items:,} of {size:,} documents")
    result.add("dry_run_s", "backfill --dry-run (whole command)", dry_run.seconds, "s")
    result.add(
        "enqueue_s", "backfill (whole command: count, then enqueue)", enqueue.seconds, "s",
        f"<= {TARGET_ENQUEUE_SECONDS:.0f}", enqueue.seconds <= TARGET_ENQUEUE_SECONDS,
    )  # fmt: skip
    result.add(
        "enqueue_docs_per_s", "backfill: documents queued per second", size / enqueue.seconds, "docs/s"
    )
    if watch.postgres_s is not None:
        # Each part's INSERT … SELECT runs in one backend: the work is PostgreSQL's CPU time.
        result.add("enqueue_postgres_cpu_s", "backfill: PostgreSQL CPU time", watch.postgres_s, "s")
    result.metrics["enqueue_machine_busy_cores"] = watch.machine_busy_s / watch.seconds
    if queued() != size:
        result.notes.append(f"backfill --parallel 1 queued {queued():,} of {size:,} documents")
    result.add("enqueue_single_session_s", "backfill --parallel 1 (one statement)", single.seconds, "s")
    if single_watch.postgres_s is not None:
        result.add(
            "enqueue_single_session_postgres_cpu_s", "backfill --parallel 1: PostgreSQL CPU time",
            single_watch.postgres_s, "s",
        )  # fmt: skip
    result.metrics["enqueue_single_session_machine_busy_cores"] = (
        single_watch.machine_busy_s / single_watch.seconds
    )
    mib = 1024 * 1024
    growth = enqueue.peak_rss_bytes - dry_run.peak_rss_bytes
    result.add("dry_run_peak_rss_mib", "backfill --dry-run: peak RSS", dry_run.peak_rss_bytes / mib, "MiB")
    result.add(
        "enqueue_peak_rss_mib", "backfill: peak RSS", enqueue.peak_rss_bytes / mib, "MiB",
        f"flat: <= dry run + {FLAT_RSS_BYTES // mib}", growth <= FLAT_RSS_BYTES,
    )  # fmt: skip

    data = copy_rows(size)
    without = timed_copy(data, trigger=False)
    with_trigger = timed_copy(data, trigger=True)
    if queued() != size:
        result.notes.append(f"COPY with the trigger queued {queued():,} of {size:,}")
    result.add("copy_without_trigger_s", f"COPY {size:,} rows, enqueue trigger off", without, "s")
    result.add("copy_with_trigger_s", f"COPY {size:,} rows, enqueue trigger on", with_trigger, "s")
    result.add("trigger_cost_ratio", "COPY with trigger / without", with_trigger / without, "ratio")
    common.empty_tables()
    return result
