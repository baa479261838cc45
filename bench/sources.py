"""Scenario `sources`: what an attached table costs the application that writes it.

Two host tables with the same columns, as a Django app's `blog_post` has them
(`id bigserial primary key, title text, body text, views int, published bool`):
`public.blog_post`, attached as a source (template `{title}\\n\\n{body}`, title column `title`),
and `public.blog_post_plain`, never attached: the application's write without Sidecar. No
workers run: what is timed is the application's write, which with the source attached also
renders the rows, writes their documents and queues them, in the same statement. The
application's session is one psycopg connection in autocommit, kept for the whole scenario as
a pooled connection would be.

1. `COPY` of N rows (100,000; 120-word bodies, formatted in memory beforehand) into each table,
   emptied (and Sidecar's documents and queue with it) and checkpointed first; REPEATS times,
   alternating the tables, which goes first alternating too; medians and the ratio. PostgreSQL's
   function statistics (`track_functions`) split the extra time of the COPY with the source:
   the mirror trigger's own (rendering, writing the documents), the enqueue trigger's
   (queueing them), and the rest (capturing the transition table, calling the triggers).
2. Single-row `UPDATE`s (N / 50: 2,000), each its own statement, by random id, into each table
   holding the N rows of step 1, the queue emptied first (as when the workers have caught up):
   of `body`, a column the template reads, and of `views`, one it does not. In blocks of BLOCK,
   the tables taking turns block by block, so both see the same moments of a noisy machine;
   UPDATE_REPEATS times, medians. Then one `UPDATE` of a tenth of the rows in one statement,
   of `body` and of `views`, REPEATS times alternating: in the same session (whose cached plans
   were made for single rows), and for `body` also in a fresh session.
3. Mirroring on attach: a table of 10 × N rows (1,000,000) loaded with `INSERT … SELECT`,
   attached by `manage.py source attach` as an operator runs it (its own process, DEBUG off):
   wall time, the copy's own time (source created → last synced), and memory, sampled: the
   command's RSS and its PostgreSQL backend's private memory (`RssAnon`, without the shared
   buffers it touches). Flat: from 10 % of the rows to the last batch within 16 MiB.
"""

import os
import random
import time
from pathlib import Path

import psycopg
from django.db import connection

from bench import common, corpus
from bench.processes import run_command

DEFAULT_SIZE = 100_000
QUICK_SIZE = 1_000
REPEATS = 3
UPDATE_REPEATS = 5  # single-row updates: cheap, and the noisiest figure
BLOCK = 100  # single-row updates per turn of a table
UPDATES_PER_ROW = 1 / 50  # 2,000 updates at 100,000 rows
BULK_SHARE = 10  # the bulk UPDATE changes one row in this many
MIRROR_FACTOR = 10  # rows of the table mirrored on attach, per row copied
WORDS = corpus.DEFAULT_WORDS_PER_DOC

TARGET_COPY_RATIO = 2.0
TARGET_UNRELATED_UPDATE_RATIO = 1.10
TARGET_MIRROR_SECONDS_PER_MILLION = 60.0
FLAT_BYTES = 16 * 1024 * 1024
MIB = 1024 * 1024

ATTACHED, PLAIN, ARCHIVE = "blog_post", "blog_post_plain", "blog_archive"
SOURCE, ARCHIVE_SOURCE = "bench-blog", "bench-archive"
TEMPLATE = "{title}\n\n{body}"
COLUMNS = "title, body, views, published"
HOST_TABLE = """CREATE TABLE public.{name} (
  id bigserial PRIMARY KEY, title text NOT NULL, body text, views integer NOT NULL DEFAULT 0,
  published boolean NOT NULL DEFAULT true)"""


def host_connection() -> psycopg.Connection:
    """A session of the application: autocommit, every statement its own transaction."""
    from embedding_site import embedded_pg

    url = os.environ.get("DATABASE_URL") or embedded_pg.url(int(os.environ["EMBEDDED_DB_PORT"]))
    return psycopg.connect(url, autocommit=True)


def execute(statement: str, params=None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def count(table: str) -> int:
    return execute(f"SELECT count(*) FROM {table}")[0][0]


def clean_up() -> None:
    """Detach the bench's sources and drop its tables (also what an interrupted run left)."""
    from documents.models import Source
    from queue_admin import sources

    common.empty_tables()  # detaching then has no documents to delete one batch at a time
    for source in Source.objects.filter(name__in=[SOURCE, ARCHIVE_SOURCE]):
        sources.detach(source)
    for name in (ATTACHED, PLAIN, ARCHIVE):
        execute(f"DROP TABLE IF EXISTS public.{name}")


def attach(table: str, name: str) -> None:
    from queue_admin import sources

    request = sources.TableRequest(table=f"public.{table}", template=TEMPLATE, title_column="title")
    sources.attach_table(request, name=name)


def alternate(measure, repeats: int) -> tuple[list[float], list[float]]:
    """measure(table, repeat) for the plain and the attached table, `repeats` times, which goes
    first alternating; (times without the source, times with it)."""
    without, with_source = [], []
    for repeat in range(repeats):
        for table in (PLAIN, ATTACHED) if repeat % 2 == 0 else (ATTACHED, PLAIN):
            (with_source if table == ATTACHED else without).append(measure(table, repeat))
    return without, with_source


def add_pair(result, key, what, without, with_source, *, scale=1.0, unit="s", target=None) -> None:
    """Three rows: the median without the source, with it, and their ratio (with its target)."""
    plain, attached = common.median(without) * scale, common.median(with_source) * scale
    ratio = attached / plain
    suffix = "us" if unit == "µs" else unit
    result.add(f"{key}_without_{suffix}", f"{what}, no source", plain, unit)
    result.add(f"{key}_with_{suffix}", f"{what}, source attached", attached, unit)
    met = None if target is None else ratio <= target
    result.add(
        f"{key}_ratio", f"{what}: with / without", ratio, "ratio", f"<= {target:g}" if target else "", met
    )
    result.metrics[f"{key}_without_runs_s"] = without
    result.metrics[f"{key}_with_runs_s"] = with_source


# --- 1. COPY ---------------------------------------------------------------------------------------


def copy_data(rows: int) -> bytes:
    """COPY's text format for `rows` posts: a title, a 120-word body, views, published."""
    documents = corpus.synthetic_documents(rows, WORDS)
    return "".join(
        f"Post {n}\t{doc['content']}\t{n * 7919 % 10_000}\t{'f' if n % 10 == 0 else 't'}\n"
        for n, doc in enumerate(documents, start=1)
    ).encode()


def function_seconds(host: psycopg.Connection) -> dict[str, float]:
    """Seconds this server has spent in the mirror and enqueue trigger functions so far:
    {"mirror_total", "mirror_self", "documents_inserted_total", ...}."""
    host.execute("SELECT pg_stat_force_next_flush()")  # this session's figures, flushed as it ends
    rows = host.execute(
        r"""SELECT funcname, total_time, self_time FROM pg_stat_user_functions
             WHERE funcname LIKE 'sidecar\_source\_%\_mirror' OR funcname = 'sidecar_documents_inserted'"""
    ).fetchall()
    found: dict[str, float] = {}
    for name, total_ms, self_ms in rows:
        kind = "mirror" if name.endswith("_mirror") else name.removeprefix("sidecar_")
        found[f"{kind}_total"] = found.get(f"{kind}_total", 0.0) + total_ms / 1000
        found[f"{kind}_self"] = found.get(f"{kind}_self", 0.0) + self_ms / 1000
    return found


def timed_copy(host: psycopg.Connection, table: str, data: bytes) -> float:
    """Empty the table (and Sidecar's documents and queue), checkpoint, COPY the rows in; seconds."""
    common.empty_tables()
    host.execute(f"TRUNCATE public.{table} RESTART IDENTITY")
    host.execute("CHECKPOINT")  # each COPY starts with the same WAL state
    started = time.perf_counter()
    with host.cursor().copy(f"COPY public.{table} ({COLUMNS}) FROM STDIN") as copy:
        for start in range(0, len(data), 1 << 20):
            copy.write(data[start : start + (1 << 20)])
    return time.perf_counter() - started


def measure_copies(result, host: psycopg.Connection, rows: int) -> None:
    data = copy_data(rows)
    split = []

    def measure(table, _repeat):
        before = function_seconds(host) if table == ATTACHED else {}
        seconds = timed_copy(host, table, data)
        if table == ATTACHED:
            after = function_seconds(host)
            split.append({key: value - before.get(key, 0.0) for key, value in after.items()})
            documents, queued = count("source_documents"), count("embedding_queue")
            if (documents, queued) != (rows, rows):
                result.notes.append(
                    f"a COPY with the source made {documents:,} documents and queued {queued:,} of {rows:,}"
                )
        return seconds

    without, with_source = alternate(measure, REPEATS)
    add_pair(result, "copy", f"COPY {rows:,} rows", without, with_source, target=TARGET_COPY_RATIO)
    extra = common.median(with_source) - common.median(without)
    if split and all(s.get("mirror_total") for s in split):
        mirror = common.median([s["mirror_self"] for s in split])
        enqueue = common.median([s.get("documents_inserted_total", 0.0) for s in split])
        result.add(
            "copy_extra_render_write_s",
            "  the extra: render, write the documents (mirror trigger)",
            mirror,
            "s",
        )
        result.add("copy_extra_enqueue_s", "  the extra: queue them (enqueue trigger)", enqueue, "s")
        rest = extra - mirror - enqueue
        result.add("copy_extra_rest_s", "  the extra: the rest (transition table, trigger calls)", rest, "s")
    else:
        result.notes.append(
            "no function statistics (track_functions needs a superuser): the extra is not split"
        )


# --- 2. UPDATE -------------------------------------------------------------------------------------


def timed_updates(host: psycopg.Connection, statement: str, params: list[tuple]) -> float:
    """Each update its own statement and transaction (autocommit); seconds for all of them."""
    with host.cursor() as cursor:
        started = time.perf_counter()
        for values in params:
            cursor.execute(statement, values)
        return time.perf_counter() - started


def measure_updates(result, host: psycopg.Connection, rows: int, updates: int) -> None:
    execute("TRUNCATE embedding_queue")
    execute(f"VACUUM ANALYZE public.{ATTACHED}, public.{PLAIN}, source_documents, embedding_queue")
    bodies = [doc["content"] for doc in corpus.synthetic_documents(updates, WORDS, seed=corpus.SEED + 1)]
    for column, statement, what, target in (
        ("body", "UPDATE public.{table} SET body = %s WHERE id = %s", "a template column (body)", None),
        ("views", "UPDATE public.{table} SET views = views + 1 WHERE id = %s", "an unrelated column (views)",
         TARGET_UNRELATED_UPDATE_RATIO),
    ):  # fmt: skip
        queued_before = count("embedding_queue")
        without, with_source = [], []
        for repeat in range(UPDATE_REPEATS):
            ids = random.Random(repeat).sample(range(1, rows + 1), updates)
            params = list(zip(bodies, ids, strict=True)) if column == "body" else [(i,) for i in ids]
            host.execute("CHECKPOINT")
            seconds = {PLAIN: 0.0, ATTACHED: 0.0}
            for block, start in enumerate(range(0, updates, BLOCK)):
                for table in (PLAIN, ATTACHED) if (repeat + block) % 2 == 0 else (ATTACHED, PLAIN):
                    seconds[table] += timed_updates(
                        host, statement.format(table=table), params[start : start + BLOCK]
                    )
            without.append(seconds[PLAIN])
            with_source.append(seconds[ATTACHED])
        if column == "views" and (queued := count("embedding_queue") - queued_before):
            result.notes.append(f"updates of views queued {queued:,} items (expected none)")
        what = f"UPDATE of {what}, one row per statement"
        add_pair(
            result,
            f"update_{column}",
            what,
            without,
            with_source,
            scale=1e6 / updates,
            unit="µs",
            target=target,
        )

    bulk_rows = max(1, rows // BULK_SHARE)
    for key, column, statement, fresh in (
        ("bulk_body", "body", "UPDATE public.{table} SET body = body || ' (edited)' WHERE id <= %s", False),
        (
            "bulk_body_fresh",
            "body",
            "UPDATE public.{table} SET body = body || ' (again)' WHERE id <= %s",
            True,
        ),
        ("bulk_views", "views", "UPDATE public.{table} SET views = views + 1 WHERE id <= %s", False),
    ):

        def measure(table, _repeat, statement=statement, fresh=fresh):
            execute("TRUNCATE embedding_queue")
            host.execute("CHECKPOINT")
            if not fresh:
                return timed_updates(host, statement.format(table=table), [(bulk_rows,)])
            with host_connection() as session:
                return timed_updates(session, statement.format(table=table), [(bulk_rows,)])

        without, with_source = alternate(measure, REPEATS)
        session = "a fresh session" if fresh else "the same session"
        add_pair(
            result,
            key,
            f"UPDATE {column} of {bulk_rows:,} rows in one statement, {session}",
            without,
            with_source,
        )


# --- 3. Mirroring on attach --------------------------------------------------------------------


def load_archive(rows: int) -> float:
    """A table of `rows` posts, loaded set-based from a pool of bodies (each text distinct by
    its number), vacuumed and analysed as autovacuum would leave it; seconds."""
    pool = [doc["content"].split(": ", 1)[1] for doc in corpus.synthetic_documents(1000, WORDS)]
    started = time.perf_counter()
    execute(HOST_TABLE.format(name=ARCHIVE))
    execute(
        f"""INSERT INTO public.{ARCHIVE} ({COLUMNS})
            SELECT 'Post ' || g, 'post ' || g || ': ' || (%(pool)s::text[])[1 + g %% 1000], g * 7919 %% 10000, true
              FROM generate_series(1, %(n)s::bigint) g""",
        {"pool": pool, "n": rows},
    )
    execute(f"VACUUM ANALYZE public.{ARCHIVE}")
    return time.perf_counter() - started


def status_bytes(pid: int, field: str) -> int:
    """A /proc/<pid>/status figure in bytes (0 if the process is gone or this is not Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def client_backends() -> set[int]:
    return {
        pid for (pid,) in execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'")
    }


def measure_mirror(result, rows: int, quick: bool) -> None:
    result.metrics["mirror_load_s"] = load_archive(rows)
    common.empty_tables()
    execute("CHECKPOINT")
    ours = client_backends()
    samples = []  # (rows done, the command's RSS, its backend's RssAnon)

    def sample(pid, _seconds):
        done = execute("SELECT rows_done FROM document_sources WHERE name = %s", [ARCHIVE_SOURCE])
        backends = client_backends() - ours
        backend = max((status_bytes(b, "RssAnon") for b in backends), default=0)
        samples.append((done[0][0] if done else 0, status_bytes(pid, "VmRSS"), backend))

    command = run_command(
        ["manage.py", "source", "attach", f"public.{ARCHIVE}", "--name", ARCHIVE_SOURCE,
         "--template", TEMPLATE.replace("\n", "\\n"), "--title-column", "title"],
        every=0.05 if quick else 0.25, sample=sample,
    )  # fmt: skip
    if command.returncode != 0:
        raise RuntimeError(
            f"manage.py source attach exited with {command.returncode}: {command.output[-2000:]}"
        )
    ((created, synced, done, state),) = execute(
        "SELECT created_at, last_synced_at, rows_done, state FROM document_sources WHERE name = %s",
        [ARCHIVE_SOURCE],
    )
    if (done, state) != (rows, "active") or count("source_documents") != rows:
        result.notes.append(f"the attach left the source {state} with {done:,} of {rows:,} rows")
    target = TARGET_MIRROR_SECONDS_PER_MILLION * rows / 1_000_000
    result.add(
        "mirror_s", f"attach a table of {rows:,} rows (manage.py source attach, whole command)",
        command.seconds, "s", f"<= {target:.3g}", command.seconds <= target,
    )  # fmt: skip
    result.add(
        "mirror_copy_s",
        "  of which the copy (source created → synced)",
        (synced - created).total_seconds(),
        "s",
    )
    result.add(
        "mirror_rows_per_s",
        "attach: rows mirrored per second (whole command)",
        rows / command.seconds,
        "rows/s",
    )
    # From 10 % of the rows to the last batch; the finish (deleting vanished documents, ANALYZE)
    # is reported apart: its memory is bounded by ANALYZE's sample, not by the table.
    copying = [s for s in samples if rows * 0.1 <= s[0] < rows and s[1]]
    result.metrics["mirror_flat_checked"] = bool(copying)
    for key, what, index in (
        ("python", "the command's RSS", 1),
        ("backend", "its PostgreSQL backend's RssAnon", 2),
    ):
        start = copying[0][index] if copying else 0
        peak = max((s[index] for s in copying), default=0)
        result.add(
            f"mirror_{key}_peak_mib", f"attach: {what}, peak while copying", peak / MIB, "MiB",
            f"flat: <= {start / MIB:.0f} (at 10 % of the rows) + {FLAT_BYTES // MIB}" if copying else "",
            peak - start <= FLAT_BYTES if copying else None,
        )  # fmt: skip
        result.metrics[f"mirror_{key}_at_10pct_mib"] = start / MIB
    result.metrics["mirror_python_peak_overall_mib"] = command.peak_rss_bytes / MIB
    result.add(
        "mirror_backend_peak_overall_mib", "attach: its backend's RssAnon, peak with the finish",
        max((s[2] for s in samples), default=0) / MIB, "MiB",
    )  # fmt: skip
    result.metrics["mirror_samples"] = len(samples)


def run(*, size: int | None, quick: bool, corpus_name: str, words_per_doc: int) -> common.ScenarioResult:
    rows = size or (QUICK_SIZE if quick else DEFAULT_SIZE)
    updates = max(10, int(rows * UPDATES_PER_ROW))
    mirror_rows = rows * MIRROR_FACTOR
    result = common.ScenarioResult(
        "sources",
        f"blog posts: 'Post n' titles, synthetic {WORDS}-word bodies (seed {corpus.SEED}); --corpus and --words "
        "do not apply",
        {
            "rows": rows, "single_row_updates": updates, "bulk_update_rows": max(1, rows // BULK_SHARE),
            "mirror_rows": mirror_rows, "repeats": REPEATS, "update_repeats": UPDATE_REPEATS,
            "template": TEMPLATE, "workers": "none: the application's write is timed, not the embedding",
        },
    )  # fmt: skip
    clean_up()
    try:
        execute(HOST_TABLE.format(name=ATTACHED))
        execute(HOST_TABLE.format(name=PLAIN))
        attach(ATTACHED, SOURCE)
        with host_connection() as host:
            try:
                host.execute("SET track_functions = 'pl'")
            except psycopg.errors.InsufficientPrivilege:
                pass  # measure_copies notes that the extra is not split
            measure_copies(result, host, rows)
            measure_updates(result, host, rows, updates)
        measure_mirror(result, mirror_rows, quick)
    finally:
        clean_up()
    return result
