"""Each source's figures, as the Sources page, the dashboard and `source list` show them:
documents, fresh / stale / missing / failed (for the configured model), queued, last change,
and the state with its reason."""

from dataclasses import asdict, dataclass
from datetime import datetime

from django.db import connection

from documents.models import Source
from queue_admin import freshness
from queue_admin.vocabulary import LIVE, sql_list


@dataclass(frozen=True)
class SourceFigures:
    id: int
    name: str
    kind: str
    target: str  # what it reads: "public.blog_post"; "" for Sidecar's own documents
    state: str
    reason: str
    enabled: bool
    priority: str
    rows: int  # its documents
    fresh: int
    stale: int
    missing: int
    failed: int
    cancelled: int
    queued: int
    last_change: datetime | None
    rows_done: int
    rows_total: int | None
    counted_at: datetime | None  # when the fresh / stale / missing figures were counted; None: now

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def progress_percent(self) -> int | None:
        """How far copying the rows got, while a source is attaching."""
        if self.state != Source.State.ATTACHING or not self.rows_total:
            return None
        return min(100, round(100 * self.rows_done / self.rows_total))


def for_all(model: str) -> list[SourceFigures]:
    """Every source's figures. On a large table the counts come from the reconciliation
    schedule's snapshot (`counted_at` says when) and the last change is not looked up: the
    Sources page and the dashboard must not scan every document on each load."""
    counts = freshness.source_freshness(model)
    with connection.cursor() as cursor:
        if counts.counted_at is None:
            cursor.execute(
                "SELECT source_id, count(*), max(updated_at) FROM source_documents GROUP BY source_id"
            )
            documents = {source_id: (rows, changed) for source_id, rows, changed in cursor.fetchall()}
        else:
            documents = {
                source_id: (figures.documents, None)
                for source_id, figures in (counts.by_source or {}).items()
            }
        cursor.execute(
            f"""SELECT d.source_id, count(*) FROM embedding_queue q JOIN source_documents d ON d.id = q.document_id
                 WHERE q.status IN ({sql_list(LIVE)}) GROUP BY d.source_id"""
        )
        queued = dict(cursor.fetchall())
    figures = []
    for source in Source.objects.all():
        state = (counts.by_source or {}).get(source.pk)
        rows, changed = documents.get(source.pk, (0, None))
        target = (
            f"{source.options['schema']}.{source.options['table']}"
            if source.kind == Source.Kind.TABLE
            else ""
        )
        figures.append(
            SourceFigures(
                id=source.pk,
                name=source.name,
                kind=source.kind,
                target=target,
                state=source.state,
                reason=source.state_reason,
                enabled=source.enabled,
                priority=source.default_priority,
                rows=rows,
                fresh=state.fresh if state else 0,
                stale=state.stale if state else 0,
                missing=state.missing if state else 0,
                failed=state.failed if state else 0,
                cancelled=state.cancelled if state else 0,
                queued=queued.get(source.pk, 0),
                last_change=changed,
                rows_done=source.rows_done,
                rows_total=source.rows_total,
                counted_at=counts.counted_at,
            )
        )
    return figures
