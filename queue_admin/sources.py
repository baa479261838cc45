"""Sources as operators run them: attach a table, copy its rows, resync, pause and resume,
detach, and watch for tables changed under a source. The admin's Sources page, `manage.py
source` and the schedules call these; the SQL of a table source is in documents.sources.tables.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.utils import timezone

from documents.models import Source
from documents.sources import tables
from documents.sources.tables import TableSourceError
from queue_admin import backfill
from queue_admin.models import QueueItem
from queue_admin.vocabulary import LIVE, sql_list

logger = logging.getLogger("sidecar.sources")

DELETE_BATCH = 5000
# The django-q2 schedule that syncs a file source is named this and the source's name.
SYNC_SCHEDULE_PREFIX = "sidecar-sync-"

__all__ = ["TableSourceError", "SourceError"]


class SourceError(ValueError):
    """An operation on a source that cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class TableRequest:
    """What a person asks for when attaching a table (or editing the source's mapping)."""

    table: str  # SCHEMA.TABLE as typed
    template: str
    title_column: str = ""
    metadata_columns: tuple[str, ...] = ()
    where: str = ""


def plan_table(request: TableRequest, *, user=None) -> tables.Mapping:
    """Check a request without writing anything: the mapping it would install."""
    if request.where and user is not None and not user.is_superuser:
        raise PermissionDenied(
            "Only a superuser may set a row filter: it is an SQL expression run inside the application's writes."
        )
    table = tables.describe(*tables.parse_table_name(request.table))
    mapping = _mapping(table, request)
    other = Source.objects.filter(kind=Source.Kind.TABLE, options__oid=table.oid).first()
    if other is not None:
        raise SourceError(
            f"{table.qualified_name} is already attached as source {other.name!r}. One table has one source: "
            "edit that source's template instead."
        )
    return mapping


def _mapping(table: tables.TableInfo, request: TableRequest) -> tables.Mapping:
    return tables.build_mapping(
        table,
        template=request.template,
        title_column=request.title_column,
        metadata_columns=request.metadata_columns,
        where=request.where,
    )


def attach_table(
    request: TableRequest,
    *,
    name: str,
    priority: str = "medium",
    user=None,
    copy_now: bool = True,
    progress: Callable[[int, int | None], None] | None = None,
) -> Source:
    """Attach a table: check it, create the source and its triggers in one transaction, then
    copy the existing rows (now, or in a background task with `copy_now` off)."""
    mapping = plan_table(request, user=user)
    source = Source(
        name=name,
        kind=Source.Kind.TABLE,
        options=mapping.as_options(),
        default_priority=priority,
        state=Source.State.ATTACHING,
        created_by=user if user is not None and user.pk else None,
    )
    try:
        source.full_clean()
    except ValidationError as exc:
        raise SourceError(
            "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
        ) from None
    with transaction.atomic():
        source.save()
        # Triggers first: a row written while the existing ones are copied is mirrored by them.
        tables.install(source.pk, mapping)
    logger.info("attached %s as source %s", mapping.qualified_name, source.name)
    if copy_now:
        copy_rows(source, progress=progress)
    else:
        schedule_copy(source)
    return source


def schedule_copy(source: Source, *, update: bool = False) -> None:
    from django_q.tasks import async_task

    async_task("queue_admin.tasks.copy_source_rows", source.pk, update, group="sidecar-sources")


def copy_rows(
    source: Source,
    *,
    update: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
    seconds: float | None = None,
) -> bool:
    """Copy (or, with `update`, re-render) every row of the source's table into its documents;
    the source shows the progress, and ends active, or broken with the reason.

    With `seconds`, stops after the batch that passes that time and keeps its place
    (`copy_position`), so that a worker task stays within its time limit; calling it again goes
    on from there. Returns True when the copy is complete."""
    mapping = tables.Mapping.from_options(source.options)
    position = source.copy_position
    if position is None or position.get("update") != update:
        position = {"after": None, "update": update, "pass": 1}
        Source.objects.filter(pk=source.pk).update(
            state=Source.State.ATTACHING,
            rows_total=tables.count_rows(mapping),
            rows_done=0,
            copy_position=position,
        )
        source.refresh_from_db()
    deadline = None if seconds is None else time.monotonic() + seconds
    done_before = source.rows_done if position["after"] is not None else 0

    def batch_done(read: int, last_key: list[str]) -> bool:
        position["after"] = last_key
        Source.objects.filter(pk=source.pk).update(rows_done=done_before + read, copy_position=position)
        if progress:
            progress(done_before + read, source.rows_total)
        return deadline is not None and time.monotonic() > deadline

    try:
        while True:
            read, after = tables.copy_rows(
                source.pk, mapping, update=update, after=position["after"], batch_done=batch_done
            )
            if after is not None:
                return False  # out of time: the next call goes on after `after`
            total_read = done_before + read
            # Re-rendering: a row changed while its batch was being rendered may have had its
            # newer text overwritten by the older one; a second pass writes only what still differs.
            if update and position["pass"] == 1:
                position.update(after=None, **{"pass": 2})
                done_before = 0
                Source.objects.filter(pk=source.pk).update(copy_position=position)
                continue
            break
        gone = tables.delete_vanished(source.pk, mapping)
        tables.analyze_documents()
    except Exception as exc:
        mark_broken(source, f"Copying the rows of {mapping.qualified_name} failed: {exc}")
        raise
    Source.objects.filter(pk=source.pk).update(
        state=Source.State.ACTIVE,
        state_reason="",
        rows_done=total_read,
        copy_position=None,
        last_synced_at=timezone.now(),
    )
    source.refresh_from_db()
    if progress:
        progress(total_read, source.rows_total)
    logger.info("source %s: %s rows copied, %s vanished documents deleted", source.name, total_read, gone)
    return True


def mark_broken(source: Source, reason: str) -> None:
    logger.error("source %s is broken: %s", source.name, reason)
    Source.objects.filter(pk=source.pk).update(state=Source.State.BROKEN, state_reason=reason)


def resync(source: Source, *, progress=None, copy_now: bool = True) -> None:
    """Re-render every row: after a template change, a fix of what broke the source, or to
    follow a renamed table. Reinstalls the triggers; re-embeds only the rows whose text changed."""
    _require_table(source)
    mapping = tables.Mapping.from_options(source.options)
    if not tables.table_exists(mapping.oid):
        raise SourceError(f"The table {mapping.qualified_name} was dropped; detach the source.")
    schema, name = tables.names_of(mapping.oid)
    request = TableRequest(
        table=tables.quoted_name(schema, name),
        template=mapping.template,
        title_column=mapping.title_column,
        metadata_columns=tuple(mapping.metadata_columns),
        where=mapping.where,
    )
    edit_table(source, request, progress=progress, copy_now=copy_now)


def edit_table(
    source: Source,
    request: TableRequest,
    *,
    user=None,
    priority: str | None = None,
    progress=None,
    copy_now: bool = True,
) -> None:
    """Change what a table source embeds (template, title, metadata, filter) and its priority:
    check it, reinstall the triggers and re-render every row in a set-based pass."""
    _require_table(source)
    previous = tables.Mapping.from_options(source.options)
    if request.where != previous.where and user is not None and not user.is_superuser:
        raise PermissionDenied("Only a superuser may change a row filter.")
    table = tables.describe(*tables.parse_table_name(request.table))
    if table.oid != previous.oid:
        raise SourceError(
            "A source stays on its table: detach it and attach the other table as a new source."
        )
    mapping = _mapping(table, request)
    changes = {"options": mapping.as_options(), "state": Source.State.ATTACHING, "copy_position": None}
    if priority is not None:
        changes["default_priority"] = priority
    with transaction.atomic():
        Source.objects.filter(pk=source.pk).update(**changes)
        tables.install(source.pk, mapping)
    source.refresh_from_db()
    if copy_now:
        copy_rows(source, update=True, progress=progress)
    else:
        schedule_copy(source, update=True)


def _require_table(source: Source) -> None:
    if source.kind != Source.Kind.TABLE:
        raise SourceError(f"Source {source.name!r} is {source.get_kind_display()}, not a table.")


@dataclass(frozen=True)
class DetachCounts:
    documents: int
    embeddings: int
    live_items: int
    held_by_workers: int


def detach_counts(source: Source) -> DetachCounts:
    """What detaching removes, for the confirmation."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT (SELECT count(*) FROM source_documents WHERE source_id = %(id)s),
                       (SELECT count(*) FROM document_embeddings e JOIN source_documents d ON d.id = e.document_id
                         WHERE d.source_id = %(id)s),
                       (SELECT count(*) FROM embedding_queue q JOIN source_documents d ON d.id = q.document_id
                         WHERE d.source_id = %(id)s AND q.status IN ({sql_list(LIVE)})),
                       (SELECT count(*) FROM embedding_queue q JOIN source_documents d ON d.id = q.document_id
                         WHERE d.source_id = %(id)s AND q.status = 'processing')""",
            {"id": source.pk},
        )
        return DetachCounts(*cursor.fetchone())


# Up to this many documents the admin detaches at once; more are removed by a worker task.
DETACH_NOW_LIMIT = 10_000


def detach(source: Source, *, now: bool = True) -> int:
    """Remove the triggers (the table is left exactly as it was), then the source's documents
    — their embeddings and queue items go with them: a worker holding one finds it gone and
    drops the work — then the source. With `now` off the documents are removed by a worker
    task. Returns the documents removed (0 when left to the task)."""
    if source.is_builtin:
        raise SourceError("Sidecar's own documents are not an attached source; delete documents instead.")
    if source.kind == Source.Kind.TABLE:
        # First, and alone: if the table is too busy to drop the triggers, nothing changed.
        tables.remove(source.pk, tables.Mapping.from_options(source.options))
    Source.objects.filter(pk=source.pk).update(state=Source.State.DETACHING, state_reason="")
    if not now:
        from django_q.tasks import async_task

        async_task("queue_admin.tasks.finish_detach", source.pk, group="sidecar-sources")
        return 0
    return finish_detach(source)


def finish_detach(source: Source) -> int:
    """Delete a detaching source's documents in batches, then the source."""
    removed = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM source_documents WHERE id IN (SELECT id FROM source_documents WHERE source_id = %s LIMIT %s)",
                [source.pk, DELETE_BATCH],
            )
            removed += cursor.rowcount
            if cursor.rowcount < DELETE_BATCH:
                break
    from django_q.models import Schedule

    Schedule.objects.filter(name=SYNC_SCHEDULE_PREFIX + source.name).delete()
    if source.kind == Source.Kind.UPLOADS:
        from documents.sources import uploads  # here: it loads the parsers, which tables never need

        uploads.remove_source(settings.SOURCE_UPLOAD_DIR, source.pk)
    Source.objects.filter(pk=source.pk).delete()
    logger.info("detached source %s: %s documents removed", source.name, removed)
    return removed


def pause(source: Source) -> int:
    """Stop queueing the source's documents for embedding; its documents stay in step with it.
    Work not started yet is taken off the queue (items being embedded finish). Returns how many."""
    with transaction.atomic():
        Source.objects.filter(pk=source.pk).update(enabled=False)
        taken, _ = QueueItem.objects.filter(
            document__source=source, status__in=[QueueItem.Status.PENDING, QueueItem.Status.RATE_LIMITED]
        ).delete()
    source.refresh_from_db()
    return taken


def resume(source: Source, model: str) -> int:
    """Queue what the source missed while paused (missing or stale), and what comes next."""
    Source.objects.filter(pk=source.pk).update(enabled=True)
    source.refresh_from_db()
    return backfill.enqueue(
        backfill.MISSING_OR_STALE, model, priority=source.default_priority, source_id=source.pk
    )


def check_tables() -> list[Source]:
    """Look at every attached table; mark the sources whose table changed under them broken,
    with the reasons. Returns the sources broken now."""
    broken = []
    for source in Source.objects.filter(kind=Source.Kind.TABLE).exclude(state=Source.State.DETACHING):
        found = tables.problems(source.pk, tables.Mapping.from_options(source.options))
        if found and source.state != Source.State.BROKEN:
            mark_broken(source, " ".join(found))
            source.refresh_from_db()
        if source.state == Source.State.BROKEN:
            broken.append(source)
    return broken


def by_name(name: str) -> Source:
    try:
        return Source.objects.get(name=name)
    except Source.DoesNotExist:
        names = ", ".join(Source.objects.values_list("name", flat=True)) or "none"
        raise SourceError(f"There is no source named {name!r} (sources: {names}).") from None
