from django.contrib import admin
from django.db import models
from django.urls import path, reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timezone import localtime
from django.utils.translation import gettext_lazy

from console.admin import backfill_page, reembed_action
from console.admin.document_list import DocumentChangeList, EmbeddingStatusFilter, SourceFilter
from console.admin.importing import DocumentImportMixin
from console.document_forms import MetadataJSONField
from documents.models import DocumentEmbedding, SourceDocument
from documents.providers.factory import get_provider
from embedding_site.counting import EstimatedCountPaginator
from queue_admin import document_state

# The change page's read-only "Embedding" section (methods below).
EMBEDDING_FIELDS = (
    "embedding_status_detail",
    "configured_model",
    "embedded_chunks",
    "embedded_tokens",
    "embedded_text_hash",
    "embedded_at",
    "latest_queue_item",
    "last_error",
)


class DocumentEmbeddingInline(admin.TabularInline):
    model = DocumentEmbedding
    fields = ("chunk_index", "model", "token_count", "text_preview", "source_text_hash", "updated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("model", "chunk_index")

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        # 384+ floats per row that the page never shows.
        return super().get_queryset(request).defer("embedding")

    @admin.display(description=gettext_lazy("text"))
    def text_preview(self, obj):
        return obj.source_text[:160] + ("…" if len(obj.source_text) > 160 else "")


@admin.register(SourceDocument)
class SourceDocumentAdmin(DocumentImportMixin, admin.ModelAdmin):
    list_display = ("__str__", "status_badge", "chunk_count", "embedded_model", "updated_at")
    list_filter = (EmbeddingStatusFilter, SourceFilter)
    search_fields = ("title", "=id")
    readonly_fields = ("id", "created_at", "updated_at", *EMBEDDING_FIELDS)
    inlines = [DocumentEmbeddingInline]
    actions = ["reembed_selected"]
    # Metadata nested too deeply for json.loads is a message next to the field, not a 500.
    formfield_overrides = {models.JSONField: {"form_class": MetadataJSONField}}
    # Large tables: no COUNT(*) of the whole table, and the filtered count stops at 10,000.
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    # "Show counts" would count every status over the whole table on each page view.
    show_facets = admin.ShowFacets.NEVER
    # Its object tools: Import, Backfill missing/stale, Semantic search, Add.
    change_list_template = "admin/documents/sourcedocument/change_list.html"

    def embedding_model(self) -> str:
        """The configured provider's model id: statuses and chunk counts are about it."""
        return get_provider().model_id

    def get_queryset(self, request):
        # The list never loads whole texts (documents may be megabytes).
        return super().get_queryset(request).defer("content")

    def get_changelist(self, request, **kwargs):
        # The page's statuses, chunk counts and models: one more query, for its rows only.
        return DocumentChangeList

    def get_fieldsets(self, request, obj=None):
        document = (None, {"fields": ("id", "title", "content", "metadata", "created_at", "updated_at")})
        if obj is None:
            return [document]
        return [document, ("Embedding", {"fields": EMBEDDING_FIELDS})]

    def get_urls(self):
        backfill = path(
            "backfill/",
            self.admin_site.admin_view(self.backfill_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_backfill",
        )
        return [backfill, *super().get_urls()]

    def backfill_view(self, request):
        return backfill_page.respond(self, request)

    def changelist_view(self, request, extra_context=None):
        allowed_to_reembed = self.has_reembed_permission(request)
        context = {
            "backfill_url": reverse("admin:documents_sourcedocument_backfill")
            if allowed_to_reembed
            else None,
            "search_url": reverse("admin:search")
            if request.user.has_perm("documents.search_sourcedocument")
            else None,
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    def has_reembed_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.reembed_{self.opts.model_name}")

    @admin.action(description=gettext_lazy("Re-embed selected documents"), permissions=["reembed"])
    def reembed_selected(self, request, queryset):
        return reembed_action.respond(self, request, queryset)

    # The list's columns.

    @admin.display(description=gettext_lazy("embedding"))
    def status_badge(self, obj):
        return format_html(
            '<span class="embedding-status embedding-{}">{}</span>',
            obj.embedding_status,
            document_state.LABELS[obj.embedding_status],
        )

    @admin.display(description=gettext_lazy("chunks"))
    def chunk_count(self, obj):
        return obj.chunk_count

    @admin.display(description=gettext_lazy("model"), empty_value="—")
    def embedded_model(self, obj):
        if not obj.embedded_model:
            return None
        # "sentence-transformers/all-MiniLM-L6-v2@onnx-int8" in a column broke at every hyphen,
        # four lines a row: it may break only after a slash.
        parts = obj.embedded_model.replace("/", "/\n").splitlines()
        return format_html_join(
            mark_safe("<wbr>"), '<span class="sidecar-nowrap">{}</span>', ((part,) for part in parts)
        )

    # The change page's "Embedding" section: read-only, and never the vector.

    def _summary(self, obj) -> dict:
        if not hasattr(obj, "_embedding_summary"):
            obj._embedding_summary = document_state.embedding_summary(obj, self.embedding_model())
        return obj._embedding_summary

    @admin.display(description=gettext_lazy("status"))
    def embedding_status_detail(self, obj):
        status = self._summary(obj)["status"]
        return format_html(
            '<span class="embedding-status embedding-{}">{}</span> — {}',
            status,
            document_state.LABELS[status],
            document_state.EXPLANATIONS[status],
        )

    @admin.display(description=gettext_lazy("model"))
    def configured_model(self, obj):
        return self.embedding_model()

    @admin.display(description=gettext_lazy("chunks"))
    def embedded_chunks(self, obj):
        return self._summary(obj)["chunks"]

    @admin.display(description=gettext_lazy("tokens"))
    def embedded_tokens(self, obj):
        return f"{self._summary(obj)['tokens']:,}"

    # (Read-only fields show None as "None": the change page's methods return the dash.)

    @admin.display(description=gettext_lazy("embedded from text"))
    def embedded_text_hash(self, obj):
        summary = self._summary(obj)
        if summary["text_hash"] is None:
            return self.get_empty_value_display()
        verdict = "the current text" if summary["text_hash_is_current"] else "an earlier text"
        return format_html("<code>{}</code> (MD5 of {})", summary["text_hash"], verdict)

    @admin.display(description=gettext_lazy("embedded at"))
    def embedded_at(self, obj):
        embedded_at = self._summary(obj)["embedded_at"]
        return _when(embedded_at) if embedded_at else self.get_empty_value_display()

    @admin.display(description=gettext_lazy("queue item"))
    def latest_queue_item(self, obj):
        item = self._summary(obj)["latest_item"]
        if item is None:
            return self.get_empty_value_display()
        return format_html(
            '<a href="{}">{}</a>, {} priority, {} retries, updated {}',
            reverse("admin:queue_admin_queueitem_change", args=[item.pk]),
            item.get_status_display(),
            item.priority,
            item.retry_count,
            _when(item.updated_at),
        )

    @admin.display(description=gettext_lazy("last error"))
    def last_error(self, obj):
        item = self._summary(obj)["latest_item"]
        if item is None or not item.error_message:
            return self.get_empty_value_display()
        return f"{item.error_message} ({item.error_kind})" if item.error_kind else item.error_message


def _when(moment) -> str:
    return date_format(localtime(moment), "DATETIME_FORMAT")
