"""Liveness and readiness, as plain functions; `console/views.py` only serialises them.

Readiness reports one entry per component, ``{"status": "ok" | "warn" | "fail", "detail": ...}``:

======================  =========================================================  ==========
component               checks                                                     when bad
======================  =========================================================  ==========
``database``            a connection answers ``SELECT 1``                          fail (503)
``migrations``          no migration of this code is unapplied                     fail (503)
``pgvector``            the ``vector`` extension is installed                      fail (503)
``workers``             a worker heartbeats; none late or dead in the last hour    warn
``breaker``             the remote provider's shared circuit breaker is closed     warn
``queue``               the queue is enabled (``queue_enabled``)                   warn
``sources``             no attached source is broken (its table changed under it)  warn
``vector_index``        no model in use is past VECTOR_INDEX_MIN_ROWS without its  warn
                        HNSW index (one being built, or a build that failed)
======================  =========================================================  ==========

Why only the first three make the answer 503: readiness tells a load balancer or orchestrator
whether *this web process* can serve requests. Without its database, its schema or pgvector it
cannot (every page and search would fail), so it should get no traffic. No live worker, an open
breaker, a paused queue or a broken source leave the web process fully able to serve the admin
— which is where operators go to see and fix exactly those problems (start workers, watch the
breaker, resume the queue, fix or detach the source); taking the admin out of rotation, or
having an orchestrator restart web containers in a loop, would fix none of them. They are reported as "warn", for monitoring to alert on.
A monitor that wants a non-200 for them asks ``/readyz?strict=1``: there a "warn" also gives 503.

Every check runs inside its own ``try``: a check that raises becomes that component's "fail"
(critical) or "warn" (the others) with the error's class and a scrubbed first line, never a
500. When the database is unreachable the other checks are not attempted (each would only
wait for the same connection timeout); they say so. Cost: ``SELECT 1``, the migration graph
against ``django_migrations``, one row of ``pg_extension``, an indexed count of the small
workers table, one row of the breaker table, the cached queue settings, the broken rows of
the small sources table (marked by the triggers and by the reconciliation schedule's and the
Sources page's look at the tables; readiness only reads them).
"""

import logging
from collections.abc import Callable

from django.db import connection as default_connection
from django.db.migrations.executor import MigrationExecutor

from documents.models import Source
from embedding_site.logs import scrub
from queue_admin import config, registry, status, vector_indexes

logger = logging.getLogger("sidecar.health")

OK, WARN, FAIL = "ok", "warn", "fail"
CRITICAL_COMPONENTS = ("database", "migrations", "pgvector")


def liveness() -> dict:
    """The process answers; touches nothing else (a database outage must not get it killed)."""
    return {"status": OK}


def _check_database(connection) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return OK, "reachable"


def _check_migrations(connection) -> tuple[str, str]:
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if not plan:
        return OK, "all applied"
    names = [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return FAIL, f"{len(names)} unapplied: {shown} (run manage.py migrate)"


def _check_pgvector(connection) -> tuple[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    if row is None:
        return (
            FAIL,
            "the vector extension is not installed (run manage.py migrate; enable 'vector' on managed services)",
        )
    return OK, f"pgvector {row[0]}"


def _check_workers(_connection) -> tuple[str, str]:
    workers = registry.worker_counts()
    if not workers.live:
        detail = "no live worker: queued documents are not being embedded (start manage.py qcluster)"
    else:
        detail = f"{workers.live} live worker{'s' if workers.live != 1 else ''}"
    if workers.late:
        detail += f"; {workers.late} late (silent for over 1.5 heartbeat intervals)"
    if workers.dead_recently:
        detail += (
            f"; {workers.dead_recently} died in the last hour (stopped heartbeating without saying goodbye)"
        )
    healthy = workers.live and not workers.late and not workers.dead_recently
    return (OK if healthy else WARN), detail


def _check_breaker(_connection) -> tuple[str, str]:
    breaker = status.provider_breaker()
    if not breaker["applicable"]:
        return OK, "not applicable (local model)"
    if breaker["state"] == "closed":
        return OK, "closed"
    detail = f"{breaker['state'].replace('_', '-')} after {breaker['failures']} consecutive failures"
    return WARN, detail


def _check_queue(_connection) -> tuple[str, str]:
    if config.current().queue_enabled:
        return OK, "enabled"
    return WARN, "paused (queue_enabled is off): workers claim no new work"


def _check_sources(_connection) -> tuple[str, str]:
    broken = list(Source.objects.filter(state=Source.State.BROKEN).values_list("name", "state_reason"))
    if not broken:
        return OK, "no source broken"
    return WARN, "; ".join(f"source {name} is broken: {reason}" for name, reason in broken)


def _check_vector_index(_connection) -> tuple[str, str]:
    states = vector_indexes.states()
    detail = "; ".join(f"{state.model}: {state.describe()}" for state in states)
    return (WARN if any(state.due for state in states) else OK), detail


CHECKS: dict[str, Callable] = {
    "database": _check_database,
    "migrations": _check_migrations,
    "pgvector": _check_pgvector,
    "workers": _check_workers,
    "breaker": _check_breaker,
    "queue": _check_queue,
    "sources": _check_sources,
    "vector_index": _check_vector_index,
}


def _error_detail(exc: Exception) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    return scrub(f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__)


def readiness(connection=None, *, strict: bool = False) -> tuple[bool, dict]:
    """Run every check; returns ``(ready, body)``.

    Steps: check the database (on ``connection``, default Django's); if it fails, mark the
    others as not checked; else run the rest, each caught on its own. ``ready`` is False when a
    critical component fails, or with ``strict`` when any component is not "ok". ``body`` is
    ``{"status": "ok" | "warn" | "fail", "components": {name: {"status", "detail"}}}``.
    """
    connection = connection or default_connection
    components: dict[str, dict] = {}
    for name, check in CHECKS.items():
        bad = FAIL if name in CRITICAL_COMPONENTS else WARN
        if name != "database" and components["database"]["status"] != OK:
            components[name] = {"status": bad, "detail": "not checked: the database is unreachable"}
            continue
        try:
            status, detail = check(connection)
        except Exception as exc:
            status, detail = bad, _error_detail(exc)
            if name == "database":
                # A half-open connection must not be reused by the next probe.
                connection.close_if_unusable_or_obsolete()
        components[name] = {"status": status, "detail": detail}
    statuses = {component["status"] for component in components.values()}
    overall = FAIL if FAIL in statuses else WARN if WARN in statuses else OK
    critical_failed = any(components[name]["status"] == FAIL for name in CRITICAL_COMPONENTS)
    ready = not critical_failed and not (strict and overall != OK)
    if not ready:
        failing = sorted(name for name, component in components.items() if component["status"] != OK)
        logger.warning("not ready: %s", ", ".join(failing), extra={"failing": failing})
    return ready, {"status": overall, "components": components}
