"""The worker loop: claim a batch, skip what is already right, chunk, embed, write, complete.

`QueueWorker.process_one_batch()` is one step that returns whether it found work;
`QueueWorker.run()` is the loop the `process_queue` command and the django-q2 drain task run
until the queue is empty, their time budget runs out, or they are asked to stop; it writes
each batch on a writer thread while the next one is embedded.
"""

import hashlib
import logging
import os
import random
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings as django_settings
from django.db import close_old_connections, connection, connections, reset_queries, transaction
from django.utils import timezone
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_random_exponential

from documents import sidecar
from documents.chunking import split_sections_into_chunks
from documents.providers.base import EmbeddingError
from queue_admin import config, limits, queue_sql, registry, worker_metrics
from queue_admin.config_schema import QueueSettings

logger = logging.getLogger("sidecar.worker")

CHUNK_OVERLAP_TOKENS = 32
# An idle worker looks for new work this often: the claim query on an empty queue is three
# index probes, and this bounds how long a new document waits (half of it on average).
IDLE_POLL_SECONDS = 0.5
RETRY_BASE_SECONDS = 5
RETRY_CAP_SECONDS = 15 * 60
# How long a write keeps trying while an application's uncommitted edit holds one of its
# documents (sidecar.DocumentsBusy); after that the batch is given back and embedded again.
WRITE_LOCK_PATIENCE_SECONDS = 30


def retry_delay(attempt: int) -> float:
    """Exponential backoff with jitter for the `attempt`-th retry (1-based), in seconds.

    Written here rather than with tenacity because the wait is not slept in-process: it is
    stored as the item's next_attempt_at, so any worker may pick the item up later.
    """
    return min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


class _NotSent(Exception):
    """A sub-batch was not sent (stopping, or no room under the shared rate limit)."""


@dataclass
class BatchReport:
    claimed: int = 0
    completed: int = 0
    skipped: int = 0
    retried: int = 0
    failed: int = 0
    rate_limited: int = 0
    requeued: int = 0
    texts_embedded: int = 0
    tokens: int = 0


@dataclass
class _Plan:
    """What one claimed item needs: its text's hash and chunks, and which chunks to embed."""

    item: queue_sql.ClaimedItem
    document_hash: str = ""
    chunks: list[str] = field(default_factory=list)
    places: list[tuple[int | None, str]] = field(default_factory=list)  # each chunk's (page, heading)
    reusable: dict[int, tuple] = field(default_factory=dict)  # chunk index → (vector, tokens)
    vectors: dict[int, object] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)
    skip: bool = False  # the sidecar already holds this very text: nothing to do
    too_long: bool = False  # over EMBEDDING_MAX_DOCUMENT_CHARACTERS: failed, never chunked
    blank: bool = False  # no text: no chunks, no model call, and the sidecar keeps no rows
    length: int = 0  # characters of a text that is too long


@dataclass
class _Batch:
    """A claimed batch between its embedding and its write."""

    batch_id: uuid.UUID
    items: list[queue_sql.ClaimedItem]
    report: BatchReport
    started: float  # time.monotonic() at the claim
    provider: object  # who gets its requests: the provider, or its fallback (breaker open)
    queue_settings: QueueSettings  # as read at the claim
    plans: list[_Plan] = field(default_factory=list)  # what to write: skipped and embedded items
    claimed_ahead: bool = False  # while the lane's batch before was at the provider
    pending: list[_Plan] = field(default_factory=list)  # claimed and planned, to embed
    quota_taken: bool = False  # its first request's share of the shared quotas, taken ahead


def _close_this_threads_connections() -> None:
    """Close this thread's database connections (Django's are per thread)."""
    try:
        connections.close_all()
    except Exception:  # a session the server already ended: nothing left to close
        logger.debug("closing the writer's database session failed", exc_info=True)


class _Budget:
    """How many more batches run() may start (`max_batches`), shared by its lanes: a lane takes
    one before claiming and gives it back when it found nothing (or failed), so the lanes
    together never process more than asked."""

    def __init__(self, batches: int | None):
        self._left = batches
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left is None:
                return True
            if self._left <= 0:
                return False
            self._left -= 1
            return True

    def give_back(self) -> None:
        with self._lock:
            if self._left is not None:
                self._left += 1


class QueueWorker:
    """One worker: an id in the registry, a provider, and the batch loop."""

    def __init__(self, provider, *, name: str = "worker", max_alive: int | None = None):
        """`max_alive`: register only if fewer workers of this `name` are alive (see
        registry.register); `registered` says whether it did."""
        self.provider = provider
        self.name = name
        self.max_alive = max_alive
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{name}:{uuid.uuid4().hex[:6]}"
        self.stop_requested = threading.Event()
        self.deadline: float | None = None  # time.monotonic(); set by run()
        self.registered = False
        # Shared rate limits and the circuit breaker guard remote services; a local model
        # has no quota to share and nothing to trip over.
        self.shared_limits = provider.is_remote
        self.provider_key = provider.model_id
        # A lane claims its next batch while its request is at a remote provider: that wait is
        # the network's and the provider's, so the claim's round trips come free. A local model
        # computes on this machine's cores, where the claim would compete with it, and the batch
        # claimed ahead would sit held (from other workers) for the whole computation.
        self.claims_ahead = provider.is_remote
        self._lane_state = threading.local()  # who gets this lane's requests (_sending_to)
        self._heartbeat: registry.Heartbeat | None = None
        self.metrics = worker_metrics.Recorder()
        # Items of batches that failed while the database was unreachable, batch by batch: they
        # could not be given back then, and the heartbeat would renew their lease for as long as
        # this worker lives, so they are given back as soon as the database answers again.
        self._to_release: list[list[uuid.UUID]] = []
        self._release_lock = threading.Lock()  # the writer thread adds to it too

    @property
    def _sending_to(self):
        """Who gets the requests of the batch this lane is embedding: the provider, or its
        fallback while the provider's breaker is open (chosen per batch, per lane)."""
        return getattr(self._lane_state, "provider", self.provider)

    @_sending_to.setter
    def _sending_to(self, provider) -> None:
        self._lane_state.provider = provider

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self):
        self.registered = registry.register(self.worker_id, group=f":{self.name}:", limit=self.max_alive)
        if self.registered:
            self._heartbeat = registry.Heartbeat(self.worker_id)
            self._heartbeat.start()
        return self

    def __exit__(self, *exc):
        if self.registered:
            self._heartbeat.stop()
            registry.mark_finished(self.worker_id)

    def run(self, *, until_empty: bool = True, max_batches: int | None = None, deadline: float | None = None):
        """Process batches until the queue is empty (if `until_empty`), `max_batches` were
        done, `deadline` (time.monotonic) passed, or stop was requested. Returns a BatchReport
        of everything done (every write finished).

        Each batch's write (chunks, completion, one transaction) runs on a writer thread with
        its own database session while a lane claims and embeds the next batch: the HNSW
        insert and the completion then overlap the model or the provider's answer instead of
        following them. The `requests_in_flight` setting is the number of lanes: with one,
        this thread is the lane (at most two batches in hand: one being written, one being
        embedded); with more, each lane is a thread with its own database session, so that
        many requests are at the provider at once, and each lane holds at most two batches.
        """
        total = BatchReport()
        self.deadline = deadline
        budget = _Budget(max_batches)
        lanes = self._lanes()
        with ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-writer") as writer:
            try:
                if lanes == 1:
                    self._lane(writer, total, budget, until_empty)
                else:
                    # This thread only waits from here on; its session would sit idle through
                    # the run and could be dead by the end (the database restarted), which the
                    # registry's goodbye would then meet. The next use opens a fresh one.
                    connection.close()
                    with ThreadPoolExecutor(lanes, thread_name_prefix=f"{self.name}-lane") as pool:
                        running = [
                            pool.submit(self._lane_on_its_thread, writer, total, budget, until_empty)
                            for _ in range(lanes)
                        ]
                        for lane in running:
                            lane.result()
            finally:
                writer.submit(_close_this_threads_connections).result()
        return total

    def _lanes(self) -> int:
        """How many lanes this run has: the setting now (a change reaches the next run). With
        the database away it is not known; one lane then backs off and retries as always."""
        try:
            return config.current().requests_in_flight
        except Exception:
            logger.warning("worker %s: settings unreadable; starting with one lane", self.worker_id)
            return 1

    def _lane_on_its_thread(self, writer, total: BatchReport, budget: "_Budget", until_empty: bool) -> None:
        try:
            self._lane(writer, total, budget, until_empty)
        finally:
            _close_this_threads_connections()

    def _lane(self, writer, total: BatchReport, budget: "_Budget", until_empty: bool) -> None:
        """One lane of run(): claim a batch, embed it, hand its write to the writer, repeat.

        While a batch is at a remote provider, the lane's claimer thread claims and plans the
        next one, as soon as the write before has finished: the claim's round trips then overlap the
        provider's answer instead of following it, and the lane still holds at most two batches
        (one being written or claimed, one at the provider) and sends one request at a time.
        """
        failures_in_a_row = 0
        writing: Future | None = None  # this lane's write in flight
        ahead: Future | None = None  # the next batch's claim, started while this one embeds

        def settle() -> None:  # wait for this lane's write in flight and count it
            nonlocal writing
            if writing is not None:
                future, writing = writing, None
                self._add(total, self._settle(future))

        def back_off() -> None:
            # The database restarting, a broken model file: keep the worker alive, back off
            # (2, 4, … 60 s), reconnect on the next try (close_old_connections).
            nonlocal failures_in_a_row
            budget.give_back()
            settle()
            failures_in_a_row += 1
            logger.exception("worker %s: batch failed; retrying in a moment", self.worker_id)
            self.stop_requested.wait(min(60, 2**failures_in_a_row))

        claimer = ThreadPoolExecutor(1, thread_name_prefix=f"{self.name}-claimer")
        try:
            while self.registered and not self.stop_requested.is_set():
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    break
                if ahead is not None:  # its share of the budget was taken when it started
                    claim, ahead = ahead.result, None
                elif budget.take():
                    claim = self._claim_batch
                else:
                    break
                try:
                    batch = claim()
                except Exception:
                    back_off()
                    continue
                if batch is None:
                    budget.give_back()
                    was_writing = writing is not None
                    settle()
                    failures_in_a_row = 0
                    if was_writing or self._to_release:
                        # That write may have given items back (a text edited meanwhile), or
                        # another lane's failed batch waits to be given back: look again.
                        continue
                    if until_empty:
                        break
                    self.stop_requested.wait(IDLE_POLL_SECONDS)
                    continue
                if self.claims_ahead and batch.pending and budget.take():
                    ahead = claimer.submit(self._claim_batch_after, writing)
                try:
                    self._embed_batch(batch)
                except Exception:
                    if ahead is not None:  # not sent while this lane backs off
                        self._add(total, self._give_back_unsent(ahead))
                        ahead = None
                        budget.give_back()
                    back_off()
                    continue
                failures_in_a_row = 0
                settle()
                writing = writer.submit(self._write_batch_on_writer_thread, batch)
        finally:
            if ahead is not None:
                self._add(total, self._give_back_unsent(ahead))
            settle()
            claimer.submit(_close_this_threads_connections).result()
            claimer.shutdown()

    def _claim_batch_after(self, write: Future | None) -> "_Batch | None":
        """The claimer's task: the next batch, claimed once the write before has finished (so
        the lane never holds more than two batches)."""
        if write is not None:
            wait_for([write])  # its outcome is the lane's to report (settle), not ours
        return self._claim_batch(ahead=True)

    def _give_back_unsent(self, ahead: Future) -> BatchReport | None:
        """A batch claimed ahead but never sent (stopping, out of time or budget, a failure):
        back to the queue now, untouched, rather than held until its lease runs out. Returns
        what became of it (claimed, requeued) for run()'s report."""
        try:
            batch = ahead.result()
        except Exception:  # the claim itself failed: it gave its items back
            return None
        if batch is None:
            return None
        batch.report.requeued += self._give_back(batch.items)
        return batch.report

    _adding = threading.Lock()  # lanes add to one total

    @classmethod
    def _add(cls, total: BatchReport, report: BatchReport | None) -> None:
        if report is not None:
            with cls._adding:
                for name in total.__dataclass_fields__:
                    setattr(total, name, getattr(total, name) + getattr(report, name))

    def _settle(self, writing: Future) -> BatchReport | None:
        """The finished write's report (recorded by the writer); None when the write failed (its
        items were given back, see _write_batch). Never raises: the database may be down while
        the loop is already handling that."""
        try:
            return writing.result()
        except Exception:
            logger.exception("worker %s: writing a batch failed; its items were given back", self.worker_id)
            self._flush_metrics()  # the requests it did send still count
            return None

    def _flush_metrics(self) -> None:
        """Flush the metrics after a failure; with the database down they stay for the next flush."""
        try:
            self.metrics.flush()
        except Exception:
            logger.warning("worker %s: metrics not flushed; kept for the next batch", self.worker_id)

    # --- one batch ------------------------------------------------------------------------

    def process_one_batch(self) -> BatchReport | None:
        """Claim and process one batch, its write included; None when there was nothing to
        claim. (run() does the same, with each write overlapping the next batch.)"""
        batch = self._prepare_batch()
        if batch is None:
            return None
        try:
            self._write_batch(batch)
        except Exception:
            self._flush_metrics()  # the requests it did send still count
            raise
        return self._finish_batch(batch)

    def _prepare_batch(self) -> "_Batch | None":
        """Claim a batch and embed it: ready to write, or None when there was nothing to claim."""
        batch = self._claim_batch()
        if batch is not None:
            self._embed_batch(batch)
        return batch

    def _claim_batch(self, *, ahead: bool = False) -> "_Batch | None":
        """Claim a batch and plan it: give back what a failed batch left; reclaim expired
        leases; claim; plan each item (skip unchanged or blank text, refuse one too long,
        chunk, find reusable chunks). Anything that fails gives the batch back and is raised.

        `ahead`: claimed while the lane's batch before is at the provider. Such a claim never
        becomes the breaker's half-open trial nor goes to the fallback: it is made only while
        the provider's breaker is closed (else None, and the lane claims again the usual way)."""
        close_old_connections()
        reset_queries()  # with DEBUG on, Django keeps every query until a request starts: never, here
        with self._release_lock:
            to_release, self._to_release = self._to_release, []
        for position, batch_items in enumerate(to_release):
            try:
                released = queue_sql.release(batch_items, self.worker_id)
            except Exception:
                # Still unreachable: keep them for the next try, or they would wait out their lease.
                with self._release_lock:
                    self._to_release.extend(to_release[position:])
                raise
            logger.warning("worker %s gave back %s items of a batch that failed", self.worker_id, released)
        queue_settings = config.current()
        registry.reclaim_and_expire(queue_settings)
        if not queue_settings.queue_enabled:
            return None
        provider = self._provider_for_batch(queue_settings, ahead=ahead)
        if provider is None:
            return None  # the provider's breaker is open and there is no fallback: wait
        batch_id, items = queue_sql.claim_batch(
            self.worker_id,
            queue_settings.batch_size,
            lease_seconds=queue_settings.lease_seconds,
            weights=queue_settings.priority_weights,
        )
        if not items:
            return None
        batch = _Batch(
            batch_id,
            items,
            BatchReport(claimed=len(items)),
            time.monotonic(),
            provider,
            queue_settings,
            claimed_ahead=ahead,
        )
        try:
            registry.set_batch(self.worker_id, batch_id)
            plans = self.plan_items(items)
            self.refuse_too_long([p for p in plans if p.too_long], batch.report)
            batch.plans = [p for p in plans if p.skip and not p.too_long]
            batch.pending = [p for p in plans if not p.skip and not p.too_long]
            if ahead and self.shared_limits and batch.pending:
                batch.quota_taken = self._take_quota_ahead(batch)
        except Exception:
            self._give_back(items)
            self._flush_metrics()
            raise
        return batch

    def _take_quota_ahead(self, batch: "_Batch") -> bool:
        """Take the shared quotas' share of a batch claimed ahead's first request now, while
        the lane's request before is out, so the lane sends it without that round trip. Asked
        once, never waited for (a wait here would only add to the lane's): refused, the lane
        takes it the usual way. Taken and never sent (a stop, the breaker opening), it stays
        counted: the window then holds one request more than was sent, never one less."""
        first_request = self._work(batch.pending)[: max(1, self.provider.max_batch_size)]
        tokens = sum(self.provider.count_tokens([chunk for _, _, chunk in first_request]))
        return self._take_quota(tokens, batch.queue_settings, wait=False)

    def _take_quota(self, tokens: int, queue_settings: QueueSettings, *, wait: bool = True) -> bool:
        """One request's share, with its `tokens`, of the provider's shared quotas; True when
        granted. Waited for up to half the lease (given up at once when stopping), or, without
        `wait`, asked once."""
        quotas = {"rpm": queue_settings.api_quota_per_minute, "tpm": queue_settings.token_quota_per_minute}
        if not wait:
            return limits.acquire(self.provider_key, 1, tokens, **quotas) == 0
        return limits.wait_for_capacity(
            self.provider_key, 1, tokens, **quotas,
            should_stop=self._should_stop, timeout=queue_settings.lease_seconds / 2,
        )  # fmt: skip

    def _embed_batch(self, batch: "_Batch") -> None:
        """Embed a claimed batch's pending plans (on the lane's thread: its request is the
        lane's one in flight). Failures of single items are recorded on them, never raised;
        anything else gives the batch back and is raised."""
        self._sending_to = batch.provider
        try:
            if batch.claimed_ahead and batch.pending and not self._breaker_still_closed():
                # The batch before opened the breaker (or another worker did) after this one was
                # claimed: it goes back unsent, as a claim now would not have been made.
                unsent = [plan.item.id for plan in batch.pending]
                batch.report.requeued += queue_sql.release(unsent, self.worker_id)
                batch.pending = []
                return
            if batch.pending:
                batch.plans += self._embed(
                    batch.pending, batch.queue_settings, batch.report, quota_taken=batch.quota_taken
                )
        except Exception:
            self._give_back(batch.items)
            self._flush_metrics()  # the requests it did send still count
            raise
        batch.pending = []

    def _write_batch(self, batch: "_Batch") -> None:
        """Write the batch's chunks and complete its items (one transaction); on the writer
        thread in run(). On failure the batch is given back and the error raised."""
        try:
            self.write_plans(batch.plans, batch.report)
        except Exception:
            self._give_back(batch.items)
            raise

    def _write_batch_on_writer_thread(self, batch: "_Batch") -> BatchReport:
        """Write the batch, then record it (registry, metrics, log): both off the lane's thread,
        whose next request is meanwhile at the provider."""
        # The writer's own session: dropped and reopened here after the database restarted, as
        # _claim_batch does for the lane's session.
        close_old_connections()
        reset_queries()
        self._write_batch(batch)
        try:
            return self._finish_batch(batch)
        except Exception:  # written and completed; only its bookkeeping failed
            logger.exception(
                "worker %s: batch %s was written but not recorded", self.worker_id, batch.batch_id
            )
            return batch.report

    def _give_back(self, items: list[queue_sql.ClaimedItem]) -> int:
        """Nothing any one item can be blamed for: give the batch back now rather than hold it
        until the lease expires; how many went back. If the database is down this fails too;
        then the next batch gives it back first (see _to_release), and this returns 0."""
        try:
            return queue_sql.release([item.id for item in items], self.worker_id)
        except Exception:
            with self._release_lock:
                self._to_release.append([item.id for item in items])
            return 0

    def _finish_batch(self, batch: "_Batch") -> BatchReport:
        """Record a written batch in the registry and the metrics, and log it."""
        report = batch.report
        elapsed_ms = int((time.monotonic() - batch.started) * 1000)
        registry.record_batch(self.worker_id, batch.batch_id, report, elapsed_ms)
        self._record_batch_metrics(report, elapsed_ms / 1000)
        logger.info(
            "batch %s: %s claimed, %s completed (%s skipped), %s retried, %s failed, %s rate-limited, "
            "%s texts embedded in %s ms",
            batch.batch_id, report.claimed, report.completed, report.skipped, report.retried, report.failed,
            report.rate_limited, report.texts_embedded, elapsed_ms,
            extra={
                "batch_id": str(batch.batch_id), "worker_id": self.worker_id, "claimed": report.claimed,
                "completed": report.completed, "skipped": report.skipped, "retried": report.retried,
                "failed": report.failed, "rate_limited": report.rate_limited,
                "texts_embedded": report.texts_embedded, "duration_ms": elapsed_ms,
            },
        )  # fmt: skip
        return report

    def _record_batch_metrics(self, report: BatchReport, seconds: float) -> None:
        self.count_outcomes(report)
        self.metrics.observe("sidecar_batch_duration_seconds", seconds)
        self.metrics.flush()

    def count_outcomes(self, report: BatchReport) -> None:
        """Count what became of a batch's documents, for /metrics (flushed with the next flush)."""
        outcomes = {
            "embedded": report.completed - report.skipped,
            "skipped": report.skipped,
            "retried": report.retried,
            "failed": report.failed,
            "rate_limited": report.rate_limited,
            "released": report.requeued,
        }
        for outcome, count in outcomes.items():
            self.metrics.inc("sidecar_documents", count, outcome=outcome)

    def _provider_for_batch(self, queue_settings: QueueSettings, *, ahead: bool = False):
        """Who gets this batch's requests: the provider, unless its shared circuit breaker is
        open; then the fallback (the same model served elsewhere) if one is configured, else
        nobody, and the queue waits. A batch claimed `ahead` gets the provider while its
        breaker is closed, else nobody."""
        if not self.shared_limits:
            return self.provider
        if ahead:
            return self.provider if self._breaker_still_closed() else None
        recovery = queue_settings.circuit_breaker_recovery_seconds
        if limits.breaker_allows(self.provider_key, recovery_seconds=recovery):
            return self.provider
        return self.provider.fallback

    def plan_items(self, items: list[queue_sql.ClaimedItem]) -> list[_Plan]:
        model = self.provider.model_id
        doc_ids = [item.document_id for item in items]
        texts = sidecar.current_texts(doc_ids)
        held = sidecar.embedded_hashes(doc_ids, model)
        plans = []
        for item in items:
            plan = _Plan(item)
            plans.append(plan)
            content, plan.document_hash, sections = texts.get(item.document_id, ("", "", None))
            doc_hashes, _ = held.get(item.document_id, (set(), set()))
            if doc_hashes == {plan.document_hash} and not item.force:
                plan.skip = True
                continue
            if len(content) > django_settings.EMBEDDING_MAX_DOCUMENT_CHARACTERS:
                plan.too_long = True
                plan.length = len(content)
                continue
            plan.blank = not content.strip()
            placed = split_sections_into_chunks(
                content,
                sections,
                max_tokens=self.provider.max_input_tokens,
                overlap_tokens=CHUNK_OVERLAP_TOKENS,
                token_spans=self.provider.token_spans,
            )
            plan.chunks = [text for text, _, _ in placed]
            plan.places = [(page, heading) for _, page, heading in placed]
        # An edited long document keeps the vectors of chunks whose text did not change;
        # a forced re-embed recomputes everything.
        reusable_hashes = {
            md5_hex(chunk)
            for plan in plans
            if not plan.item.force
            for chunk in plan.chunks
            if md5_hex(chunk) in held.get(plan.item.document_id, (set(), set()))[1]
        }
        known = sidecar.vectors_for_hashes(doc_ids, model, reusable_hashes)
        for plan in plans:
            if plan.item.force:
                continue
            for index, chunk in enumerate(plan.chunks):
                if (digest := md5_hex(chunk)) in known:
                    plan.reusable[index] = known[digest]
        return plans

    def refuse_too_long(self, plans: list[_Plan], report: BatchReport) -> None:
        """Dead-letter documents too long to embed, with what to do about it; their sidecar
        rows (if any) stay as they were."""
        limit = django_settings.EMBEDDING_MAX_DOCUMENT_CHARACTERS
        for plan in plans:
            message = (
                f"{self.provider.model_id}: the text has {plan.length:,} characters, more than the "
                f"{limit:,} the workers embed: split it into smaller documents (the limit is the setting "
                "EMBEDDING_MAX_DOCUMENT_CHARACTERS, for an engineer to raise)"
            )
            self.metrics.inc("sidecar_item_failures", kind="permanent")
            if queue_sql.fail(plan.item.id, self.worker_id, kind="permanent", message=message):
                report.failed += 1

    @staticmethod
    def _work(plans: list[_Plan]) -> list[tuple[_Plan, int, str]]:
        """Every chunk to embed (not reusable) as (plan, chunk index, text), sorted by length:
        similar lengths pad less. Its first provider-sized slice is the first request."""
        work = [
            (plan, index, chunk)
            for plan in plans
            for index, chunk in enumerate(plan.chunks)
            if index not in plan.reusable
        ]
        work.sort(key=lambda entry: len(entry[2]))
        return work

    def _embed(
        self,
        plans: list[_Plan],
        queue_settings: QueueSettings,
        report: BatchReport,
        *,
        quota_taken: bool = False,
    ) -> list[_Plan]:
        """Embed every chunk not reusable, in provider-sized sub-batches sorted by length.

        Returns the plans whose every chunk now has a vector; the others were retried,
        failed or rate-limited on the queue here. A permanent error in a sub-batch of several
        texts is retried text by text, so one bad document fails alone. `quota_taken`: the
        first sub-batch's share of the shared quotas was taken ahead (_take_quota_ahead).
        """
        work = self._work(plans)
        size = max(1, self.provider.max_batch_size)
        broken: dict[uuid.UUID, EmbeddingError] = {}
        unsent: set[uuid.UUID] = set()  # never sent: given back to the queue untouched
        for start in range(0, len(work), size):
            sub_batch = [entry for entry in work[start : start + size] if entry[0].item.id not in broken]
            try:
                self._embed_into(sub_batch, report, queue_settings, quota_taken=quota_taken and start == 0)
            except _NotSent:
                for plan, _, _ in work[start:]:
                    unsent.add(plan.item.id)
                break
            except EmbeddingError as error:
                if error.kind != "permanent" or len(sub_batch) == 1:
                    for plan, _, _ in sub_batch:
                        broken.setdefault(plan.item.id, error)
                    if error.kind != "permanent":
                        # Transient or rate-limited: the rest of the batch would hit the same.
                        for plan, _, _ in work[start + size :]:
                            broken.setdefault(plan.item.id, error)
                        break
                    continue
                for entry in sub_batch:
                    try:
                        self._embed_into([entry], report, queue_settings)
                    except EmbeddingError as single_error:
                        broken.setdefault(entry[0].item.id, single_error)
        for plan in plans:
            for index, (vector, tokens) in plan.reusable.items():
                plan.vectors[index], plan.tokens[index] = vector, tokens
        unsent -= broken.keys()
        report.requeued += queue_sql.release(list(unsent), self.worker_id)
        failures = [(plan, broken[plan.item.id]) for plan in plans if plan.item.id in broken]
        self.record_failures(failures, queue_settings, report)
        return [plan for plan in plans if plan.item.id not in broken and plan.item.id not in unsent]

    def _embed_into(
        self, sub_batch, report: BatchReport, queue_settings: QueueSettings, *, quota_taken: bool = False
    ) -> None:
        """Embed one sub-batch within the shared limits (its quota taken here unless
        `quota_taken` already); the breaker learns how it went."""
        if self._should_stop():
            # Stopping (SIGTERM) or out of time: the request in flight was answered and will be
            # written; the batch's later requests are not sent, their items go back at once.
            raise _NotSent("stopping, or past the time budget")
        texts = [chunk for _, _, chunk in sub_batch]
        tokens = sum(self.provider.count_tokens(texts)) if self.shared_limits else 0
        if self.shared_limits and not quota_taken:
            waiting_since = time.monotonic()
            granted = self._take_quota(tokens, queue_settings)
            self.metrics.inc("sidecar_rate_limit_wait_seconds", time.monotonic() - waiting_since)
            if not granted:
                raise _NotSent("stopping, or the shared rate limit left no room before the lease ends")
        on_fallback = self._sending_to is not self.provider
        sent_at = time.monotonic()
        may_retry = (
            (lambda: self._may_retry(tokens, queue_settings, on_fallback)) if self.shared_limits else None
        )
        try:
            result = self._sending_to.embed(texts, may_retry)
        except EmbeddingError as error:
            self._record_request(sent_at, error.kind)
            if self.shared_limits and not on_fallback:
                if error.kind == "transient":  # the provider is down or struggling
                    limits.record_failure(
                        self.provider_key,
                        str(error),
                        threshold=queue_settings.circuit_breaker_failure_threshold,
                    )
                else:  # it answered: up, even if it refused these texts
                    limits.record_success(self.provider_key)
            raise
        # The breaker tracks the provider itself: the fallback's answers say nothing about it.
        if self.shared_limits and not on_fallback:
            limits.record_success(self.provider_key)
        for (plan, index, _), vector, tokens in zip(
            sub_batch, result.vectors, result.token_counts, strict=True
        ):
            plan.vectors[index] = vector
            plan.tokens[index] = tokens
        self._record_request(sent_at, "ok")
        report.texts_embedded += len(sub_batch)
        report.tokens += sum(result.token_counts)
        self.metrics.inc("sidecar_texts_embedded", len(sub_batch))
        self.metrics.inc("sidecar_tokens_sent", sum(result.token_counts))

    def _may_retry(self, tokens: int, queue_settings: QueueSettings, on_fallback: bool) -> bool:
        """The HTTP client asks before it retries a failed request: a retry is a request like
        any other, so it takes its share of the shared rate limit; and none is sent once the
        provider's breaker is no longer closed (another worker opened it, or this request was
        the half-open trial, which is one request, not one per attempt)."""
        if self._should_stop():
            return False
        if not on_fallback and not limits.breaker_is_closed(self.provider_key):
            return False
        return self._take_quota(tokens, queue_settings)

    def _breaker_still_closed(self) -> bool:
        return not self.shared_limits or limits.breaker_is_closed(self.provider_key)

    def _should_stop(self) -> bool:
        """Asked to stop, or past the time budget of run(): don't wait for quota any more (a
        minute's wait for the sliding window would overrun a drain's budget and `--seconds`);
        what was not sent goes back to the queue."""
        return self.stop_requested.is_set() or (
            self.deadline is not None and time.monotonic() >= self.deadline
        )

    def _record_request(self, sent_at: float, result: str) -> None:
        self.metrics.observe("sidecar_provider_request_duration_seconds", time.monotonic() - sent_at)
        self.metrics.inc("sidecar_provider_requests", result=result)

    def record_failures(self, failures, queue_settings: QueueSettings, report: BatchReport) -> None:
        for plan, error in failures:
            self.metrics.inc("sidecar_item_failures", kind=error.kind)
            message = f"{self.provider.model_id}: {error}"
            if error.kind == "rate_limited":
                wait = (
                    error.retry_after
                    if error.retry_after is not None
                    else queue_settings.rate_limit_delay_ms / 1000
                )
                until = timezone.now() + timedelta(seconds=wait)
                report.rate_limited += queue_sql.mark_rate_limited(
                    [plan.item.id], self.worker_id, until=until, message=message
                )
            elif error.kind == "transient":
                status = queue_sql.retry_later(
                    plan.item.id, self.worker_id, delay_seconds=retry_delay(plan.item.retry_count + 1),
                    kind="transient", message=message,
                )  # fmt: skip
                if status == "failed":
                    report.failed += 1
                elif status:
                    report.retried += 1
            elif queue_sql.fail(plan.item.id, self.worker_id, kind="permanent", message=message):
                report.failed += 1

    def write_plans(self, plans: list[_Plan], report: BatchReport) -> None:
        """Write chunks and complete items in one transaction, for texts still current.

        A document edited since we read it gets no vector from the old text: its item goes
        back to pending (the edit was coalesced into it) and is embedded again.
        """
        if not plans:
            return
        # The whole transaction again, not just the lock: it holds nothing while it waits.
        for attempt in Retrying(
            retry=retry_if_exception_type(sidecar.DocumentsBusy),
            wait=wait_random_exponential(multiplier=0.05, max=1),
            stop=stop_after_delay(WRITE_LOCK_PATIENCE_SECONDS),
            reraise=True,
        ):
            with attempt:
                self._write_once(plans, report)

    def _write_once(self, plans: list[_Plan], report: BatchReport) -> None:
        with transaction.atomic():
            current = sidecar.lock_current_hashes([plan.item.document_id for plan in plans])
            stale = [p for p in plans if current.get(p.item.document_id) not in (p.document_hash, None)]
            fresh = [p for p in plans if p not in stale]
            report.requeued += queue_sql.release([p.item.id for p in stale], self.worker_id)
            owned = queue_sql.complete(
                [p.item.id for p in fresh], self.worker_id, {p.item.id: sum(p.tokens.values()) for p in fresh}
            )
            to_write = {
                plan.item.document_id: (plan.document_hash, self._chunks(plan))
                for plan in fresh
                if plan.item.id in owned and plan.item.document_id in current and not plan.skip
            }
            sidecar.replace_chunks(to_write, self.provider.model_id)
        report.completed += len(owned)
        report.skipped += sum(1 for plan in fresh if (plan.skip or plan.blank) and plan.item.id in owned)

    @staticmethod
    def _chunks(plan: _Plan) -> list[sidecar.Chunk]:
        return [
            sidecar.Chunk(
                index, text, md5_hex(text), plan.vectors[index], plan.tokens[index], *plan.places[index]
            )
            for index, text in enumerate(plan.chunks)
        ]
