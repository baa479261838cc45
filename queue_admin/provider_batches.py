"""Backfills and re-embeds through the provider's Batch API: half the price, answered within its
window.

A provider batch takes its documents out of the queue's hands the way a worker does: their
items are claimed (`processing`, held by `ProviderBatch.worker_id`), so no worker embeds them
meanwhile, and every later write is compare-and-set as a worker's is. Then, one step at a
time, each step recorded before the next so that a restart picks up where it stopped:

    preparing ── plan, upload the file, create the batch ──▶ submitted ── poll ──▶ done
                                                  (cancel) ──▶ cancelling ── poll ──▶ done

* preparing: each item is planned as a worker plans it (unchanged text skipped, chunks kept
  when their text is unchanged); one request line per document, the chunks still to embed.
  The file's id and what each line holds are stored before the batch is created; the batch is
  created with our id in its metadata, so a process that died before storing the provider's
  id finds the batch instead of creating a second one. Items wait for this at most
  PREPARING_LEASE_SECONDS; then the workers take them back (their lease runs out).
* submitted: the leases cover the provider's window. Each minute the batch is polled; once
  it is finished its answers are written as a worker writes them: a text edited since it was
  sent goes back to the queue, a failed line is retried the normal way (transient,
  rate-limited or permanent, as online), and a request that never ran (the batch expired or
  was cancelled) goes back to the queue untouched.
* A batch the provider refused (validation failed), or an error the provider says is
  permanent, gives every item back to the queue, where the workers embed it online.

`advance_all()` runs every minute (the django-q2 schedule) and from `manage.py
provider_batches`; an advisory lock per batch keeps two of them from doing the same step.
"""

import logging
import statistics
import uuid
from contextlib import contextmanager

from django.db import connection, transaction
from django.db.models import Count, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import ngettext

from documents.providers.base import EmbeddingError, EmbeddingResult
from documents.providers.factory import get_provider
from documents.providers.openai import OpenAIEmbeddingProvider
from documents.providers.openai_batches import (
    COMPLETION_WINDOW_SECONDS,
    FINISHED,
    MAX_FILE_BYTES,
    MAX_INPUTS,
    MAX_REQUESTS,
    PRICE_FACTOR,
    BatchApi,
    Request,
    batch_errors,
)
from queue_admin import backfill, config, queue_sql, reembed
from queue_admin.models import ProviderBatch
from queue_admin.worker import BatchReport, QueueWorker

logger = logging.getLogger("sidecar.provider_batches")

# Documents claimed per provider batch; a file that would pass the provider's limits hands its
# surplus to a new batch.
DOCUMENTS_PER_BATCH = 10_000
# How long claimed items wait for their file to reach the provider before the workers may
# take them back and embed them online.
PREPARING_LEASE_SECONDS = 3600
# Past the provider's window: a batch answered at the last minute is still written.
SUBMITTED_LEASE_SECONDS = COMPLETION_WINDOW_SECONDS + 2 * 3600
# Items planned and written per transaction when the answers come.
WRITE_SLICE = 500
METADATA_KEY = "sidecar_batch"
NOTHING_LEFT = (
    "nothing left to send: the workers took its documents back (they waited past their lease) or they were "
    "cancelled"
)


class NotAvailable(Exception):
    """The Batch API cannot be used with this set-up; the message says why."""


def unavailable_reason(provider=None) -> str | None:
    """Why the Batch API cannot be used now, in words; None when it can."""
    provider = _openai(provider or get_provider())
    if provider is None:
        return "the Batch API needs EMBEDDING_PROVIDER=openai (an OpenAI-compatible service with /files and /batches)"
    return None


def offered(documents: int) -> bool:
    """Whether the admin offers the Batch API for a backfill or re-embed of this many documents."""
    threshold = config.current().batch_api_min_documents
    return bool(threshold) and documents >= threshold and unavailable_reason() is None


def documents_at_the_provider() -> int:
    """Documents held by open provider batches: live in the queue, but not the workers' to do."""
    open_batches = ProviderBatch.objects.filter(state__in=ProviderBatch.OPEN_STATES)
    return open_batches.aggregate(documents=Sum("documents"))["documents"] or 0


# The turnaround the admin quotes is the median of this many latest answered batches.
TURNAROUND_SAMPLE = 20


def recent_turnaround_seconds() -> float | None:
    """How long the provider took lately, sent to answered: the median over the latest
    TURNAROUND_SAMPLE completed batches; None before any."""
    finished = (
        ProviderBatch.objects.filter(provider_status="completed", submitted_at__isnull=False)
        .exclude(finished_at=None)
        .order_by("-finished_at")
        .values_list("submitted_at", "finished_at")[:TURNAROUND_SAMPLE]
    )
    seconds = sorted((done - sent).total_seconds() for sent, done in finished)
    return statistics.median(seconds) if seconds else None


def window_in_words() -> str:
    """The provider's window to answer a batch: "24 hours"."""
    hours = COMPLETION_WINDOW_SECONDS // 3600
    return ngettext("%(n)s hour", "%(n)s hours", hours) % {"n": hours}


def batch_cost(online_cost: float | None) -> float | None:
    return None if online_cost is None else online_cost * PRICE_FACTOR


def start(
    kind: str,
    *,
    priority: str,
    limit: int | None = None,
    include_held: bool = False,
    source_id: int | None = None,
    started_by: str = "",
) -> list[ProviderBatch]:
    """Queue the documents a backfill of `kind` selects and claim them into provider batches
    (sent by the next `advance_all`). Returns the batches made; none when nothing matched or
    workers hold every matching item already."""
    provider = _usable_provider()
    with transaction.atomic():
        ids = backfill.enqueue_and_list(
            kind,
            provider.model_id,
            priority=priority,
            limit=limit,
            include_held=include_held,
            source_id=source_id,
        )
        return _claim_into_batches(ids, provider.model_id, started_by)


def start_reembed(documents: QuerySet, *, started_by: str = "") -> list[ProviderBatch]:
    """Re-embed `documents` (forced, as "Re-embed selected" does) through provider batches."""
    provider = _usable_provider()
    with transaction.atomic():
        ids = reembed.reembed_and_list(documents)
        return _claim_into_batches(ids, provider.model_id, started_by)


def _usable_provider():
    provider = get_provider()
    if reason := unavailable_reason(provider):
        raise NotAvailable(reason)
    return provider


def _claim_into_batches(ids: list, model: str, started_by: str) -> list[ProviderBatch]:
    batches = []
    for first in range(0, len(ids), DOCUMENTS_PER_BATCH):
        batch = ProviderBatch.objects.create(model=model, started_by=started_by[:200])
        _, claimed = queue_sql.claim_documents(
            ids[first : first + DOCUMENTS_PER_BATCH], batch.worker_id, lease_seconds=PREPARING_LEASE_SECONDS
        )
        if not claimed:
            batch.delete()
            continue
        _save(batch, documents=claimed)
        batches.append(batch)
        logger.info("provider batch %s: %s documents claimed by %s", batch.id, claimed, started_by)
    return batches


def advance_all() -> dict[str, int]:
    """One step for every open batch; returns how many batches are in each state after it.
    A batch whose step fails keeps its state and its error message, and is tried again."""
    for batch_id in ProviderBatch.objects.filter(state__in=ProviderBatch.OPEN_STATES).values_list(
        "id", flat=True
    ):
        try:
            advance(batch_id)
        except Exception:
            logger.exception("provider batch %s: this step failed; trying again next time", batch_id)
    return _states()


def advance(batch_id: uuid.UUID) -> ProviderBatch | None:
    """Take one batch one step on (send it, or poll and write it); None if another process
    is doing that right now."""
    with _exclusive(batch_id) as ours:
        if not ours:
            return None
        batch = ProviderBatch.objects.get(pk=batch_id)
        try:
            if batch.state == ProviderBatch.State.PREPARING:
                _send(batch)
            elif batch.state in (ProviderBatch.State.SUBMITTED, ProviderBatch.State.CANCELLING):
                _poll(batch)
        except EmbeddingError as error:
            if error.kind != "permanent":
                _save(batch, error_message=f"{error} (tried again next minute)")
                raise
            # The provider will never take this batch (refused file, unknown batch, revoked
            # key): the workers embed its documents online instead.
            logger.error("provider batch %s: %s; its documents go back to the queue", batch.id, error)
            _finish(batch, error=str(error))
        return batch


def cancel(batch_id: uuid.UUID, cancelled_by: str = "") -> ProviderBatch:
    """Cancel a batch: not yet sent, its documents go back to the queue now; at the provider,
    the provider is asked to cancel, and the next poll writes what it had finished and gives
    back the rest."""
    with _exclusive(batch_id) as ours:
        if not ours:
            raise NotAvailable("the batch is being sent or written right now; try again in a minute")
        batch = ProviderBatch.objects.get(pk=batch_id)
        cancelled = f"cancelled by {cancelled_by or 'someone'}"
        if batch.state == ProviderBatch.State.PREPARING and not batch.input_file_id:
            _finish(batch, error=f"{cancelled} before it was sent")
        elif batch.state in (ProviderBatch.State.PREPARING, ProviderBatch.State.SUBMITTED):
            api = _api()
            # Uploaded but not recorded as created: it may have been created all the same.
            created = batch.provider_batch_id or (api.find(METADATA_KEY, str(batch.id)) or {}).get("id")
            if created:
                api.cancel(created)
                _save(
                    batch,
                    provider_batch_id=created,
                    state=ProviderBatch.State.CANCELLING,
                    error_message=cancelled,
                )
            else:
                _finish(batch, error=f"{cancelled} before it was sent")
        return batch


# --- sending ------------------------------------------------------------------------------


def _send(batch: ProviderBatch) -> None:
    api = _api()
    if not batch.input_file_id:
        if not queue_sql.held_by(batch.worker_id, limit=1):
            _finish(batch, error=NOTHING_LEFT)
            return
        lines = _plan_lines(batch, api)
        if not lines:
            _finish(batch)
            return
        batch.input_file_id = api.upload(b"".join(lines), f"sidecar-{batch.id}")
        _save(
            batch,
            "input_file_id",
            "requests",
            "texts_sent",
            "estimated_tokens",
            "completed",
            "failed",
            "returned",
        )
    created = api.find(METADATA_KEY, str(batch.id)) or api.create(
        batch.input_file_id, {METADATA_KEY: str(batch.id)}
    )
    queue_sql.extend_lease(batch.worker_id, SUBMITTED_LEASE_SECONDS)
    _save(
        batch,
        provider_batch_id=created["id"],
        provider_status=created.get("status", ""),
        state=ProviderBatch.State.SUBMITTED,
        submitted_at=timezone.now(),
        error_message="",
    )
    logger.info(
        "provider batch %s sent as %s: %s requests, %s texts",
        batch.id, created["id"], len(batch.requests), batch.texts_sent,
    )  # fmt: skip


def _plan_lines(batch: ProviderBatch, api: BatchApi) -> list[bytes]:
    """Plan the batch's items; write at once those with nothing to embed; one request line per
    other document, within the provider's limits (the surplus goes to a new batch). Records
    what each line holds on `batch` (saved by the caller with the file's id)."""
    worker = _worker(batch)
    report = BatchReport()
    items = queue_sql.held_by(batch.worker_id)
    plans = worker.plan_items(items)
    worker.refuse_too_long([p for p in plans if p.too_long], report)
    plans = [p for p in plans if not p.too_long]
    to_send = [p for p in plans if not p.skip and len(p.reusable) < len(p.chunks)]
    worker.write_plans([p for p in plans if p not in to_send], report)
    worker.count_outcomes(report)
    worker.metrics.flush()
    lines, requests, surplus, texts, size, tokens = [], {}, [], 0, 0, 0
    for plan in to_send:
        indices = [i for i in range(len(plan.chunks)) if i not in plan.reusable]
        chunks = [plan.chunks[i] for i in indices]
        line = api.request_line(Request(str(plan.item.id), chunks))
        full = (
            len(lines) >= MAX_REQUESTS
            or texts + len(indices) > MAX_INPUTS
            or size + len(line) > MAX_FILE_BYTES
        )
        if lines and full:
            surplus.append(plan.item.id)
            continue
        lines.append(line)
        requests[str(plan.item.id)] = {"hash": plan.document_hash, "chunks": indices}
        texts, size = texts + len(indices), size + len(line)
        tokens += sum(worker.provider.count_tokens(chunks))
    if surplus:
        _hand_over(batch, surplus)
    batch.requests, batch.texts_sent, batch.estimated_tokens = requests, texts, tokens
    batch.completed += report.completed
    batch.failed += report.failed
    batch.returned += report.requeued
    return lines


def _hand_over(batch: ProviderBatch, item_ids: list) -> None:
    successor = ProviderBatch.objects.create(model=batch.model, started_by=batch.started_by)
    moved = queue_sql.hand_over(item_ids, batch.worker_id, successor.worker_id)
    _save(successor, documents=moved)
    batch.documents -= moved
    _save(batch, "documents")
    logger.info(
        "provider batch %s: %s documents past the provider's limits go in %s", batch.id, moved, successor.id
    )


# --- polling and writing ------------------------------------------------------------------


def _poll(batch: ProviderBatch) -> None:
    api = _api()
    answer = api.get(batch.provider_batch_id)
    status = answer["status"]
    counts = answer.get("request_counts")
    _save(
        batch,
        provider_status=status[:40],
        request_counts=counts if isinstance(counts, dict) else {},
        last_polled_at=timezone.now(),
    )
    if status not in FINISHED:
        return
    answers: dict = {}
    expected = {custom_id: len(sent["chunks"]) for custom_id, sent in batch.requests.items()}
    for field in ("error_file_id", "output_file_id"):  # an output line wins over an error line
        file_id = answer.get(field)
        if isinstance(file_id, str) and file_id:
            setattr(batch, field, file_id[:200])
            answers.update(api.read_answers(api.download(file_id, batch.texts_sent), expected))
    _write_answers(batch, answers)
    error = batch_errors(answer) if status == "failed" else ""
    if status in ("expired", "cancelled") and not batch.error_message:
        error = f"the provider's batch {status}; what it had not answered went back to the queue"
    _finish(batch, error=error or batch.error_message)


def _write_answers(batch: ProviderBatch, answers: dict) -> None:
    """Write what the provider answered, WRITE_SLICE items a transaction, as a worker would.
    Every held item leaves the batch's hands here: completed, retried, failed, or given back."""
    worker = _worker(batch)
    queue_settings = config.current()
    slices = batch.documents // WRITE_SLICE + 2
    for _ in range(slices):
        items = queue_sql.held_by(batch.worker_id, limit=WRITE_SLICE)
        if not items:
            return
        report = BatchReport()
        written, failures, give_back = [], [], []
        for plan in worker.plan_items(items):
            sent = batch.requests.get(str(plan.item.id))
            answer = answers.get(str(plan.item.id))
            if plan.skip:
                written.append(plan)
            elif sent is None or plan.document_hash != sent["hash"] or plan.too_long:
                give_back.append(plan.item.id)  # edited since it was sent: embed the new text
            elif isinstance(answer, EmbeddingResult) and _fill(plan, sent["chunks"], answer):
                written.append(plan)
            elif isinstance(answer, EmbeddingError):
                failures.append((plan, answer))
            else:  # never run, not answered, or a kept chunk gone meanwhile
                give_back.append(plan.item.id)
        report.requeued += queue_sql.release(give_back, batch.worker_id)
        worker.record_failures(failures, queue_settings, report)
        worker.write_plans(written, report)
        worker.count_outcomes(report)
        worker.metrics.flush()
        batch.completed += report.completed
        batch.failed += report.failed
        batch.returned += report.requeued + report.retried + report.rate_limited
        _save(batch, "completed", "failed", "returned")
    raise RuntimeError(f"provider batch {batch.id}: items still held after writing every answer")


def _fill(plan, sent_chunks: list[int], answer: EmbeddingResult) -> bool:
    """Put the answer's vectors on the plan's chunks; False if any chunk is left without one."""
    for index, vector, tokens in zip(sent_chunks, answer.vectors, answer.token_counts, strict=True):
        plan.vectors[index], plan.tokens[index] = vector, tokens
    for index, (vector, tokens) in plan.reusable.items():
        plan.vectors.setdefault(index, vector)
        plan.tokens.setdefault(index, tokens)
    return all(index in plan.vectors for index in range(len(plan.chunks)))


def _finish(batch: ProviderBatch, error: str = "") -> None:
    """Done: anything still held goes back to the queue (pending, no attempt counted)."""
    held = [item.id for item in queue_sql.held_by(batch.worker_id)]
    returned = queue_sql.release(held, batch.worker_id) if held else 0
    _save(
        batch,
        "completed",
        "failed",
        state=ProviderBatch.State.DONE,
        finished_at=timezone.now(),
        returned=batch.returned + returned,
        error_message=error[:4000],
    )
    logger.info(
        "provider batch %s done: %s completed, %s failed, %s returned to the queue%s",
        batch.id, batch.completed, batch.failed, batch.returned, f" ({error})" if error else "",
    )  # fmt: skip


# --- helpers ------------------------------------------------------------------------------


def _openai(provider) -> OpenAIEmbeddingProvider | None:
    provider = getattr(provider, "primary", provider)  # a fallback pair: the primary's service
    return provider if isinstance(provider, OpenAIEmbeddingProvider) else None


def _api() -> BatchApi:
    provider = _openai(get_provider())
    if provider is None:
        raise NotAvailable(unavailable_reason())
    return BatchApi(provider)


def _worker(batch: ProviderBatch) -> QueueWorker:
    """A worker that is never registered nor run: it plans and writes as `batch`'s items'
    holder, so its compare-and-set writes match the claim."""
    worker = QueueWorker(get_provider(), name="batch-api")
    worker.worker_id = batch.worker_id
    return worker


def _save(batch: ProviderBatch, *fields: str, **values) -> None:
    for name, value in values.items():
        setattr(batch, name, value)
    batch.save(update_fields=[*fields, *values])


def _states() -> dict[str, int]:
    counts = dict.fromkeys(ProviderBatch.State.values, 0)
    for row in ProviderBatch.objects.values("state").annotate(n=Count("id")):
        counts[row["state"]] = row["n"]
    return counts


@contextmanager
def _exclusive(batch_id: uuid.UUID):
    """A session-level advisory lock on one batch: its steps commit as they go (uploads and
    writes are long), so a row lock held in one transaction would not do."""
    key = f"sidecar:provider_batch:{batch_id}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [key])
        ours = cursor.fetchone()[0]
    try:
        yield ours
    finally:
        if ours:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])
