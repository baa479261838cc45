import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from documents.models import SourceDocument
from queue_admin import config_schema, vocabulary


class QueueItem(models.Model):
    """One unit of embedding work for one document.

    Rows are created by the database triggers on `source_documents`
    (`queue_admin/sql/document_triggers.sql`) and moved through their states only by the queue
    SQL in `queue_admin/queue_sql.py`; the admin changes them through actions, never by editing
    fields.
    """

    Status = vocabulary.Status
    Priority = vocabulary.Priority
    ErrorKind = vocabulary.ErrorKind
    LIVE_STATUSES = vocabulary.LIVE

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    document = models.ForeignKey(
        SourceDocument,
        # ON DELETE CASCADE lives in the database (migration 0002) so deletes that bypass
        # Django also remove the document's queue items; a worker holding one then finds its
        # compare-and-set matches no row and drops the work.
        on_delete=models.DO_NOTHING,
        related_name="queue_items",
    )
    operation = models.CharField(max_length=20, default="embed")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.MEDIUM)
    retry_count = models.PositiveIntegerField(default=0)
    max_retries = models.PositiveIntegerField(default=3)
    next_attempt_at = models.DateTimeField(db_default=models.functions.Now())
    error_kind = models.CharField(max_length=20, choices=ErrorKind.choices, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    batch_id = models.UUIDField(null=True, blank=True)
    worker_id = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    processing_started_at = models.DateTimeField(null=True, blank=True)
    processing_completed_at = models.DateTimeField(null=True, blank=True)
    estimated_tokens = models.PositiveIntegerField(default=0)
    actual_tokens = models.PositiveIntegerField(null=True, blank=True)
    rate_limit_delay_ms = models.PositiveIntegerField(default=0)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_default=models.functions.Now())
    updated_at = models.DateTimeField(db_default=models.functions.Now())

    class Meta:
        db_table = "embedding_queue"
        verbose_name = _("queue item")
        verbose_name_plural = _("queue items")
        permissions = [
            ("operate_queueitem", "Can retry, cancel and raise the priority of queue items"),
        ]
        constraints = [
            # At most one live item per document: repeated edits coalesce into it.
            models.UniqueConstraint(
                fields=["document"],
                condition=models.Q(status__in=list(vocabulary.LIVE)),
                name="embedding_queue_one_live_per_document",
            ),
        ]
        indexes = [
            # The claim query reads the oldest claimable rows of each priority from here.
            models.Index(
                fields=["priority", "next_attempt_at"],
                condition=models.Q(status__in=list(vocabulary.CLAIMABLE)),
                name="embedding_queue_claimable_idx",
            ),
            # Expired leases are found without touching finished rows.
            models.Index(
                fields=["lease_expires_at"],
                condition=models.Q(status="processing"),
                name="embedding_queue_lease_idx",
            ),
            models.Index(fields=["status", "priority"], name="embedding_queue_status_idx"),
            # No index of our own on document: the foreign key has one already, and a second
            # costs every enqueue (about 7% of a million-row backfill) for nothing.
            models.Index(
                fields=["processing_completed_at"],
                condition=models.Q(status="completed"),
                name="embedding_queue_completed_idx",
            ),
            # The admin's list of all items, newest first, without sorting a million rows per
            # page view.
            models.Index(fields=["created_at", "id"], name="embedding_queue_created_idx"),
            # The dashboard's and queue_status's oldest pending age: one index probe, not a scan
            # of every pending row (a backfill leaves a million of them).
            models.Index(
                fields=["created_at"],
                condition=models.Q(status="pending"),
                name="embedding_queue_pending_idx",
            ),
            # Dead letters newest first (the admin's list), and the dashboard's failures of the
            # last hour and its top error messages.
            models.Index(
                fields=["updated_at", "id"],
                condition=models.Q(status="failed"),
                name="embedding_queue_failed_idx",
            ),
        ]

    def __str__(self):
        return f"{self.operation} {self.document_id} ({self.status})"


class DeadLetter(QueueItem):
    """Failed items: the admin's "Dead letters" list (retry or cancel them there)."""

    class Meta:
        proxy = True
        verbose_name = _("dead letter")
        verbose_name_plural = _("dead letters")


class StuckItem(QueueItem):
    """Items still `processing` after their lease ran out: the admin's "Stuck" list."""

    class Meta:
        proxy = True
        verbose_name = _("stuck item")
        verbose_name_plural = _("stuck items")


class Worker(models.Model):
    """A worker process's registration and heartbeat; written only by the workers.

    A worker that ends its run says goodbye and is *finished* (drains retire every couple of
    minutes: that is turnover, not a failure); one that stops heartbeating without a goodbye
    (killed, crashed, hung) is *dead*, as marked by whichever worker notices. Both keep their
    row; `queue_admin.registry` defines how each is counted."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        IDLE = "idle"
        FINISHED = "finished"
        DEAD = "dead"

    RUNNING_STATUSES = (Status.ACTIVE, Status.IDLE)

    worker_id = models.CharField(max_length=200, primary_key=True)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.IDLE)
    last_heartbeat = models.DateTimeField(db_default=models.functions.Now())
    current_batch_id = models.UUIDField(null=True, blank=True)
    tasks_processed = models.PositiveBigIntegerField(default=0)
    total_processing_time_ms = models.PositiveBigIntegerField(default=0)
    error_count = models.PositiveBigIntegerField(default=0)
    rate_limit_count = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(db_default=models.functions.Now())
    updated_at = models.DateTimeField(db_default=models.functions.Now())

    class Meta:
        db_table = "embedding_queue_workers"
        verbose_name = _("worker")
        verbose_name_plural = _("workers")
        ordering = ["-last_heartbeat"]

    def __str__(self):
        return self.worker_id


class QueueConfig(models.Model):
    """One operator-editable queue setting; `queue_admin.config_schema.SCHEMA` types and bounds it."""

    config_key = models.CharField(max_length=100, unique=True)
    config_value = models.JSONField()
    description = models.TextField(blank=True, default="")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "embedding_queue_config"
        ordering = ["config_key"]
        verbose_name = _("queue setting")
        verbose_name_plural = _("queue settings")

    def __str__(self):
        return self.config_key

    def clean(self):
        try:
            config_schema.validate_value(self.config_key, self.config_value)
        except ValidationError as exc:
            raise ValidationError({"config_value": exc}) from None

    def save(self, *args, **kwargs):
        # Every write path (admin, command, shell) is validated here, not only forms.
        config_schema.validate_value(self.config_key, self.config_value)
        super().save(*args, **kwargs)


class ConfigChange(models.Model):
    """One change of one queue setting: who, when, old -> new. Written by `config.set_value`."""

    config_key = models.CharField(max_length=100)
    old_value = models.JSONField(null=True, blank=True)
    new_value = models.JSONField()
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(db_default=models.functions.Now())

    class Meta:
        db_table = "embedding_queue_config_history"
        ordering = ["-changed_at", "-id"]
        verbose_name = _("queue setting change")
        verbose_name_plural = _("queue setting changes")
        indexes = [models.Index(fields=["config_key", "-changed_at"], name="config_history_key_idx")]

    def __str__(self):
        return f"{self.config_key}: {config_schema.show_value(self.old_value)} -> {config_schema.show_value(self.new_value)}"

    @property
    def label(self) -> str:
        item = config_schema.SCHEMA.get(self.config_key)
        return item.label if item else self.config_key

    @property
    def old_display(self) -> str:
        return (
            "—"
            if self.old_value is None
            else config_schema.display(self.old_value, config_schema.SCHEMA.get(self.config_key))
        )

    @property
    def new_display(self) -> str:
        return config_schema.display(self.new_value, config_schema.SCHEMA.get(self.config_key))


class ProviderLimitState(models.Model):
    """One embedding provider's shared rate limits (a sliding window) and circuit breaker.

    Every worker on every machine, and the admin, read and write the same row, so they agree on
    how much quota is left and whether the provider is being given a rest. Written only by
    `queue_admin/limits.py`, one atomic statement per operation; rows appear on first use.
    """

    class Breaker(models.TextChoices):
        CLOSED = "closed"
        OPEN = "open"
        HALF_OPEN = "half_open", "half-open"

    provider_key = models.CharField(max_length=300, unique=True, help_text="model id or base URL")
    # The quotas' sliding window: requests and tokens granted per one-second slot (slot number =
    # Unix time in seconds), the last 61 slots only; NULL until the first grant.
    window_slots = ArrayField(models.BigIntegerField(), null=True, blank=True)
    window_requests = ArrayField(models.BigIntegerField(), null=True, blank=True)
    window_tokens = ArrayField(models.BigIntegerField(), null=True, blank=True)
    breaker_state = models.CharField(max_length=10, choices=Breaker.choices, db_default=Breaker.CLOSED)
    consecutive_failures = models.PositiveIntegerField(db_default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    trial_started_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, db_default="")
    last_failure_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(db_default=models.functions.Now())

    class Meta:
        db_table = "embedding_provider_state"
        ordering = ["provider_key"]
        verbose_name = _("provider limit")
        verbose_name_plural = _("provider limits")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(breaker_state__in=["closed", "open", "half_open"]),
                name="embedding_provider_state_breaker_valid",
            ),
        ]

    def __str__(self):
        return self.provider_key


class FreshnessSnapshot(models.Model):
    """How many documents are fresh, stale, missing or failed for one model, as last counted.

    Counting them is an anti-join over every document, too slow for each dashboard load on a
    large table; the reconciliation schedule (every 5 minutes) counts them and stores the result
    here (`queue_admin/freshness.py`), and the dashboard shows it "as of" `counted_at`.
    """

    model = models.CharField(max_length=200, unique=True)
    documents = models.PositiveBigIntegerField(help_text="documents with text")
    fresh = models.PositiveBigIntegerField()
    stale = models.PositiveBigIntegerField()
    missing = models.PositiveBigIntegerField()
    failed = models.PositiveBigIntegerField(help_text="not fresh, newest item failed, not queued again")
    cancelled = models.PositiveBigIntegerField(
        default=0, help_text="not fresh, newest item cancelled by a person, not queued again"
    )
    # The same counts per source: {"<source id>": [documents, fresh, stale, missing, failed, cancelled]}
    by_source = models.JSONField(default=dict, blank=True)
    counted_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "embedding_freshness_snapshots"
        verbose_name = _("document freshness snapshot")
        verbose_name_plural = _("document freshness snapshots")

    def __str__(self):
        return f"{self.model} at {self.counted_at:%Y-%m-%d %H:%M}"


class WorkerMetric(models.Model):
    """One Prometheus series of what workers did (a counter, or a histogram's bucket, sum or
    count), summed over every worker on every machine. Written only by
    `queue_admin/worker_metrics.py`, one statement per batch; read by /metrics."""

    name = models.CharField(max_length=100)
    labels = models.JSONField(default=dict)
    value = models.FloatField(default=0)

    class Meta:
        db_table = "embedding_worker_metrics"
        constraints = [
            models.UniqueConstraint(fields=["name", "labels"], name="embedding_worker_metrics_series")
        ]

    def __str__(self):
        return f"{self.name}{self.labels} = {self.value}"


class ProviderBatch(models.Model):
    """Documents embedded through the provider's Batch API: claimed from the queue (their items
    are `processing`, held by `worker_id` until the answers are written), sent as one file, and
    written when the provider has answered. Moved through its states only by
    `queue_admin/provider_batches.py`; the admin shows it and can cancel it."""

    class State(models.TextChoices):
        PREPARING = "preparing", _("Preparing")  # claimed; the file is not at the provider yet
        SUBMITTED = "submitted", _("At the provider")
        CANCELLING = "cancelling", _("Cancelling")
        DONE = "done", _("Done")

    OPEN_STATES = (State.PREPARING, State.SUBMITTED, State.CANCELLING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    state = models.CharField(_("state"), max_length=20, choices=State.choices, default=State.PREPARING)
    provider_status = models.CharField(_("provider's status"), max_length=40, blank=True, default="")
    model = models.CharField(_("model"), max_length=200)
    provider_batch_id = models.CharField(_("provider's batch id"), max_length=200, blank=True, default="")
    input_file_id = models.CharField(max_length=200, blank=True, default="")
    output_file_id = models.CharField(max_length=200, blank=True, default="")
    error_file_id = models.CharField(max_length=200, blank=True, default="")
    # custom_id (the item's id) → {"hash": the text's md5 when sent, "chunks": chunk indices sent}
    requests = models.JSONField(default=dict, blank=True)
    documents = models.PositiveIntegerField(_("documents"), default=0)
    texts_sent = models.PositiveIntegerField(_("texts sent"), default=0)
    estimated_tokens = models.PositiveBigIntegerField(_("estimated tokens"), default=0)
    request_counts = models.JSONField(default=dict, blank=True)  # the provider's total/completed/failed
    completed = models.PositiveIntegerField(_("completed"), default=0)
    failed = models.PositiveIntegerField(_("failed"), default=0)
    returned = models.PositiveIntegerField(_("returned to the queue"), default=0)
    error_message = models.TextField(_("error"), blank=True, default="")
    started_by = models.CharField(_("started by"), max_length=200, blank=True, default="")
    created_at = models.DateTimeField(_("created"), db_default=models.functions.Now())
    submitted_at = models.DateTimeField(_("submitted"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "embedding_provider_batches"
        ordering = ["-created_at"]
        verbose_name = _("provider batch")
        verbose_name_plural = _("provider batches")

    def __str__(self):
        return self.provider_batch_id or str(self.id)

    @property
    def worker_id(self) -> str:
        """Who holds this batch's items in the queue (never a live worker's id)."""
        return f"batch-api:{self.id}"
