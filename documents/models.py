import hashlib
import secrets
import uuid

from django.conf import settings
from django.contrib.postgres.functions import RandomUUID
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Value
from django.db.models.functions import MD5, Now
from django.utils.translation import gettext_lazy as _
from pgvector.django import VectorField

from documents.priority import Priority
from documents.validators import validate_clean_text, validate_json_object, validate_source_name

# Sidecar's own documents (written into source_documents directly) belong to this source; the
# migration that introduced sources created it with this id, and the column defaults to it.
BUILTIN_SOURCE_ID = 1


class Source(models.Model):
    """Where documents come from. Every document belongs to one; downstream of the document
    (queue, workers, sidecar, search) all sources share one code path.

    The kind's own details (a table's schema, name, key and template) are in `options`; the
    domain code of each kind (`documents.sources`) reads and writes them.
    """

    class Kind(models.TextChoices):
        BUILTIN = "builtin", "Sidecar's documents"
        TABLE = "table", "Database table"
        UPLOADS = "uploads", "Uploaded files"
        FOLDER = "folder", "Folder"
        S3 = "s3", "S3-compatible bucket"
        URLS = "urls", "Web pages"

    # Kinds whose documents are files (or pages) parsed into text by a sync.
    FILE_KINDS = (Kind.UPLOADS, Kind.FOLDER, Kind.S3, Kind.URLS)

    class State(models.TextChoices):
        ATTACHING = "attaching", "attaching (copying existing rows)"
        ACTIVE = "active", "active"
        BROKEN = "broken", "broken"
        DETACHING = "detaching", "detaching"

    name = models.CharField(max_length=100, unique=True, validators=[validate_source_name])
    kind = models.CharField(max_length=20, choices=Kind.choices)
    options = models.JSONField(default=dict, blank=True)
    default_priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.MEDIUM)
    # Paused: its documents stay in step with the source, but nothing of it is queued for
    # embedding until it is resumed.
    enabled = models.BooleanField(default=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.ACTIVE)
    state_reason = models.TextField(blank=True, default="")
    # Copying the existing rows (attach, resync): how far it got, for the progress shown.
    rows_total = models.BigIntegerField(null=True, blank=True)
    rows_done = models.BigIntegerField(default=0)
    # Where an unfinished copy goes on ({"after": [key text, ...], "update": bool, "pass": n}):
    # a long copy runs as a chain of worker tasks, each within the task time limit.
    copy_position = models.JSONField(null=True, blank=True, editable=False)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    # The last (or the running) sync of a file source: its figures and each failed file with
    # the reason; the shape is documents.sources.file_sync.SyncReport.as_dict().
    last_sync = models.JSONField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "document_sources"
        verbose_name = _("source")
        verbose_name_plural = _("sources")
        ordering = ["id"]

    def __str__(self):
        return self.name

    @property
    def is_builtin(self) -> bool:
        return self.kind == self.Kind.BUILTIN

    @property
    def is_files(self) -> bool:
        return self.kind in self.FILE_KINDS


class SourceDocument(models.Model):
    """A document whose text is embedded. Writes from anywhere (ORM, psql, COPY) are picked
    up by the enqueue triggers in queue_admin's migrations, not by Django signals."""

    # Database defaults as well as Python ones, so that psql, COPY and other services can
    # insert just (title, content) the way they would into any table.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, db_default=RandomUUID(), editable=False)
    title = models.CharField(
        max_length=500, blank=True, default="", db_default="", validators=[validate_clean_text]
    )
    content = models.TextField(blank=True, default="", db_default="", validators=[validate_clean_text])
    metadata = models.JSONField(
        default=dict,
        db_default=Value({}, output_field=models.JSONField()),
        blank=True,
        validators=[validate_json_object],
    )
    # Kept by PostgreSQL for every writer; compared with the sidecar's document_text_hash to
    # find stale embeddings in one indexed anti-join instead of hashing every text each time.
    content_hash = models.GeneratedField(
        expression=MD5("content"), output_field=models.CharField(max_length=32), db_persist=True
    )
    # Where it came from and its key there, so that a search hit can be joined back to the
    # row, file or page. Sidecar's own documents have no other key (NULL: their id is it).
    source = models.ForeignKey(
        Source,
        on_delete=models.PROTECT,
        default=BUILTIN_SOURCE_ID,
        db_default=BUILTIN_SOURCE_ID,
        related_name="documents",
    )
    source_key = models.TextField(null=True, blank=True, editable=False)
    # Where each part of a parsed file's text begins, and its page and heading path there
    # ([{"start": 0, "page": 1, "heading": "Installation › Proxies"}, ...]); the workers chunk
    # each part apart so that every chunk can cite its page and heading. NULL: plain text.
    sections = models.JSONField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())
    updated_at = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        db_table = "source_documents"
        verbose_name = _("source document")
        verbose_name_plural = _("source documents")
        ordering = ["-updated_at"]
        # The admin's list, newest first. The id breaks ties (the admin adds it to the order),
        # and matters: a bulk load stamps every row with the same time, and without it a page
        # view would sort every document of that load.
        indexes = [
            models.Index(fields=["-updated_at", "-id"], name="source_documents_newest_idx"),
            # Search's metadata filter (`metadata @> '{"tenant": 42}'`): it counts the documents
            # a filter keeps, and a selective filter searches those exactly (documents/search.py).
            GinIndex(fields=["metadata"], name="source_documents_metadata_gin", opclasses=["jsonb_path_ops"]),
        ]
        constraints = [
            # Also the arbiter of the mirror triggers' INSERT ... ON CONFLICT, and the index
            # every per-source query starts from.
            models.UniqueConstraint(fields=["source", "source_key"], name="source_documents_source_key_uniq"),
        ]
        # What the "Queue operators" group may do besides viewing (queue_admin migration 0007).
        permissions = [
            ("reembed_sourcedocument", "Can re-embed documents and run a backfill"),
            ("search_sourcedocument", "Can use semantic search"),
        ]

    def __str__(self):
        return self.title or f"Document {self.id}"

    def clean_fields(self, exclude=None):
        # Django's TextField would turn raw bytes into the string "b'...'" before any
        # validator sees them: refuse them while they are still bytes.
        # Likewise a metadata of None or [] counts as "blank" and would skip its validator.
        errors = {}
        checks = {
            "title": validate_clean_text,
            "content": validate_clean_text,
            "metadata": validate_json_object,
        }
        for name, check in checks.items():
            try:
                check(getattr(self, name))
            except ValidationError as exc:
                errors[name] = exc.error_list
        if errors:
            raise ValidationError(errors)
        super().clean_fields(exclude=exclude)

    def save(self, *args, **kwargs):
        # Validate on every save, not only in forms: the shell and scripts get the same clear
        # error as the admin, and nothing is written.
        self.full_clean(validate_unique=False, validate_constraints=False)
        super().save(*args, **kwargs)


class DocumentEmbedding(models.Model):
    """The sidecar: one row per chunk of a document, per model.

    Written only by the workers. `document_text_hash` (MD5 of the whole document at embed
    time, the same on every chunk row) lets the triggers, backfill and reconciliation decide
    "is this document's embedding current?" in set-based SQL without re-chunking.
    """

    document = models.ForeignKey(
        SourceDocument,
        # The database cascades (ON DELETE CASCADE, set in the migration) so that deletes from
        # psql or another service clean up too; Django must not delete row by row first.
        on_delete=models.DO_NOTHING,
        related_name="embeddings",
    )
    chunk_index = models.PositiveIntegerField()
    source_text = models.TextField()
    source_text_hash = models.CharField(max_length=32, help_text="MD5 hex of source_text")
    document_text_hash = models.CharField(max_length=32, help_text="MD5 hex of the whole document's content")
    embedding = VectorField(dimensions=settings.EMBEDDING_DIMENSIONS)
    model = models.CharField(max_length=200, help_text="Model name and version that produced the vector")
    token_count = models.PositiveIntegerField(default=0)
    # Where in a file the chunk is: its PDF page and heading path ("Installation › Proxies"),
    # for a search hit's citation. NULL and "" for text without that structure. (Not a
    # PositiveIntegerField: its CHECK would scan the whole table when the column is added.)
    page = models.IntegerField(null=True, blank=True)
    heading = models.TextField(blank=True, default="", db_default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "document_embeddings"
        verbose_name = _("document embedding")
        verbose_name_plural = _("document embeddings")
        ordering = ["document_id", "chunk_index"]
        constraints = [
            models.UniqueConstraint(
                fields=["document", "chunk_index", "model"], name="document_embeddings_doc_chunk_model_uniq"
            )
        ]
        # The vector indexes are not here: one per model, built when a model has enough
        # chunks to need one, outside migrations (documents/vector_index.py).
        indexes = [models.Index(fields=["model", "document"], name="document_embeddings_model_idx")]

    def __str__(self):
        return f"{self.document_id} chunk {self.chunk_index} ({self.model})"


class ChunkTerms(models.Model):
    """The words of one sidecar chunk, for keyword search (PostgreSQL full text): its text as
    a tsvector by the text search configuration `config`, under a GIN index.

    Written only by triggers on document_embeddings (documents/sql/keyword_search.sql), for
    every writer, and by `rebuild_search_index`. A table of its own rather than a column of
    the sidecar, so that a change of configuration rewrites these narrow rows and never a
    chunk's: each rewritten chunk row would go into the HNSW index again (measured: 10 ms a
    row, 60 times the rest of the update). Stored, not an expression index over source_text,
    because ranking reads each matching row's tsvector: re-parsing the text instead made a
    query matching half of 100,000 chunks 17 times slower (3.2 s against 0.18 s).
    """

    chunk = models.OneToOneField(
        DocumentEmbedding,
        primary_key=True,
        db_column="embedding_id",
        # ON DELETE CASCADE in the database (documents migration 0010), whoever deletes chunks.
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="terms",
    )
    # The chunk's own, copied so that keyword search ranks and picks each document's best
    # chunk from this table alone, without a lookup in the sidecar per match.
    document_id = models.UUIDField()
    model = models.CharField(max_length=200)
    config = models.TextField(help_text="The text search configuration that made `terms`")
    terms = SearchVectorField()

    class Meta:
        db_table = "document_chunk_terms"
        indexes = [GinIndex(fields=["terms"], name="document_chunk_terms_gin")]

    def __str__(self):
        return f"terms of chunk {self.pk} ({self.config})"


class ApiToken(models.Model):
    """A per-user key for the search API (`Authorization: Bearer <token>`).

    Only a SHA-256 of the token is stored: a leaked database or admin screenshot does not
    leak working keys. The plaintext exists once, when `issue` returns it. Tokens are long
    random strings, so an unsalted fast hash is enough (nothing to brute-force) and lets a
    request find its row with one indexed lookup.
    """

    PREFIX = "sidecar_"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'RAG service'")
    token_hash = models.CharField(
        max_length=64, unique=True, editable=False, help_text="SHA-256 hex of the token"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "api_tokens"
        ordering = ["-created_at"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self):
        return f"{self.name} ({self.user})"

    @staticmethod
    def hash_token(plaintext: str) -> str:
        return hashlib.sha256(plaintext.encode()).hexdigest()

    def set_new_token(self) -> str:
        """Give this (unsaved) token a fresh secret; returns the plaintext, shown once."""
        plaintext = self.PREFIX + secrets.token_urlsafe(32)
        self.token_hash = self.hash_token(plaintext)
        return plaintext

    @classmethod
    def issue(cls, user, name: str) -> tuple["ApiToken", str]:
        token = cls(user=user, name=name)
        plaintext = token.set_new_token()
        token.save()
        return token, plaintext


class SearchRateWindow(models.Model):
    """How many search API requests a user made in the current one-minute window.

    One row per user, counted by one atomic upsert (console/api_auth.py), so every web
    process on every machine shares the count without a cache server.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True)
    window_start = models.DateTimeField()
    requests = models.PositiveIntegerField()

    class Meta:
        db_table = "search_rate_windows"


class SearchJudgment(models.Model):
    """Whether a document answers a query, as a person who runs search judged it. The judged
    queries with at least one relevant document are the test set that search is measured on
    (queue_admin/search_quality.py). Marking the same (query, document) again updates it."""

    # Normalised (stripped, inner whitespace collapsed: normalize_query) so that the same
    # question typed twice is one query of the test set.
    query = models.TextField()
    document = models.ForeignKey(
        SourceDocument,
        # Also ON DELETE CASCADE in the database (documents migration 0011): a mirror trigger
        # or psql deleting a document must not fail on its judgments.
        on_delete=models.CASCADE,
        db_constraint=False,
        related_name="judgments",
    )
    relevant = models.BooleanField()
    judged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    judged_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "search_judgments"
        ordering = ["query", "-judged_at"]
        constraints = [
            models.UniqueConstraint(fields=["query", "document"], name="search_judgments_query_document_uniq")
        ]

    def __str__(self):
        return f"{self.query!r}: {'relevant' if self.relevant else 'not relevant'}"


def normalize_query(query: str) -> str:
    """A query as judgments key it: stripped, each run of whitespace one space."""
    return " ".join(query.split())


class EvaluationRun(models.Model):
    """One measurement of search against the test set: every mode's figures and what they
    were measured under (model, chunking, search settings), so that runs can be compared."""

    ran_at = models.DateTimeField(auto_now_add=True)
    ran_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    ran_from = models.CharField(max_length=20, help_text="admin or shell")
    queries = models.PositiveIntegerField(help_text="How many queries the test set had")
    k = models.PositiveSmallIntegerField()
    model = models.CharField(max_length=200)
    chunking = models.JSONField(help_text='{"max_tokens": ..., "overlap_tokens": ...}')
    search_settings = models.JSONField(help_text='{"ef_search": ..., "text_config": ..., "rrf_k": ...}')
    # {"hybrid": {"recall": 0.8, "mrr": 0.7, "ndcg_10": 0.75}, "vector": {...}, "keyword": {...}}
    metrics = models.JSONField()
    # [{"query": ..., "relevant": 3, "ranks": {"hybrid": [1, 4], ...}}]: the 1-based ranks at
    # which each mode found relevant documents within k; every figure can be recomputed from it.
    per_query = models.JSONField(default=list)

    class Meta:
        db_table = "search_evaluation_runs"
        ordering = ["-ran_at"]

    def __str__(self):
        return f"evaluation {self.ran_at:%Y-%m-%d %H:%M} ({self.model}, {self.queries} queries)"
