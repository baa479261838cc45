"""What people do to the queue by hand: retry, cancel, raise priority, requeue stuck items,
clear dead workers. The admin's actions (and any command) call these; the SQL itself is in
`queue_sql.py`.

Each takes the selected item ids (any iterable, read in chunks so that "select all 1,000,000"
never builds one giant list) and returns an Outcome: how many changed, how many were
selected, and in words why the rest did not change.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

import tenacity
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils.translation import gettext

from queue_admin import queue_sql, registry
from queue_admin.models import QueueItem, Worker

logger = logging.getLogger("sidecar.operations")

CHUNK = 5000


@dataclass(frozen=True)
class Outcome:
    changed: int
    selected: int
    unchanged_because: str  # why the selected-but-unchanged ones were left alone

    @property
    def unchanged(self) -> int:
        return self.selected - self.changed


def _chunks(ids: Iterable, size: int):
    iterator = iter(ids)  # itertools.batched is Python 3.12+
    while chunk := list(islice(iterator, size)):
        yield chunk


def _apply(function, item_ids: Iterable, *args) -> tuple[int, int]:
    changed = selected = 0
    with transaction.atomic():  # all chunks or none: a person sees one result
        for chunk in _chunks(item_ids, CHUNK):
            selected += len(chunk)
            result = function(chunk, *args)
            # reclaim_expired_leases answers (requeued, failed): both changed
            changed += sum(result) if isinstance(result, tuple) else result
    return changed, selected


# A document edited while its failed item is being retried gets a live item from the
# trigger first; the unique index then refuses the retry. Running the statement again (in a
# savepoint) sees the new live item and skips that document.
@tenacity.retry(
    retry=tenacity.retry_if_exception_type(IntegrityError), stop=tenacity.stop_after_attempt(3), reraise=True
)
def _retry_chunk(item_ids: list) -> int:
    with transaction.atomic():
        return queue_sql.retry_items(item_ids)


def likely_to_fail_again(queryset):
    """The items of `queryset` that failed with a permanent error (the provider or the worker
    said retrying cannot help: too long, refused as invalid) whose document has not changed
    since: retried as they are, they fail the same way."""
    return queryset.filter(
        status=QueueItem.Status.FAILED,
        error_kind=QueueItem.ErrorKind.PERMANENT,
        document__updated_at__lte=F("updated_at"),
    )


def retry(item_ids: Iterable, user=None) -> Outcome:
    changed, selected = _apply(_retry_chunk, item_ids)
    logger.info("%s retried %s of %s selected queue items", user, changed, selected)
    return Outcome(
        changed,
        selected,
        gettext("only failed or cancelled items are retried, and not when their document is already queued"),
    )


def cancel(item_ids: Iterable, user=None) -> Outcome:
    reason = f"cancelled by {user}" if user is not None else "cancelled"
    changed, selected = _apply(queue_sql.cancel_items, item_ids, reason)
    logger.info("%s cancelled %s of %s selected queue items", user, changed, selected)
    return Outcome(
        changed, selected, gettext("only pending, processing or rate-limited items can be cancelled")
    )


def raise_priority(item_ids: Iterable, user=None) -> Outcome:
    changed, selected = _apply(queue_sql.raise_priority, item_ids, "high")
    logger.info("%s raised %s of %s selected queue items to high priority", user, changed, selected)
    return Outcome(
        changed,
        selected,
        gettext("only items waiting to be claimed can be raised, and high ones already are"),
    )


def requeue_stuck(item_ids: Iterable, user=None) -> Outcome:
    changed, selected = _apply(queue_sql.reclaim_expired_leases, item_ids)
    logger.info("%s requeued %s of %s selected stuck items", user, changed, selected)
    return Outcome(
        changed, selected, gettext("only items still processing after their lease ran out are requeued")
    )


def clear_dead_workers(worker_ids: Iterable | None = None, user=None) -> Outcome:
    """Delete registry rows of workers that are not alive (dead, finished, or silent for
    three heartbeat intervals): all of them, or those of `worker_ids`. Live workers are never
    removed: their row is how they are seen. Queue items keep their worker id as history."""
    candidates = (
        Worker.objects.all() if worker_ids is None else Worker.objects.filter(pk__in=list(worker_ids))
    )
    selected = candidates.count()
    alive = registry.alive_workers().values("pk")
    changed, _ = candidates.exclude(pk__in=alive).delete()
    logger.info("%s cleared %s dead workers", user, changed)
    return Outcome(changed, selected, gettext("live workers are kept"))
