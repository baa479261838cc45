from django.contrib import admin

from documents.models import DocumentEmbedding


@admin.register(DocumentEmbedding)
class DocumentEmbeddingAdmin(admin.ModelAdmin):
    """Machine-owned rows: read-only, and never the whole vector on the page."""

    list_display = ("document", "chunk_index", "model", "token_count", "updated_at")
    list_filter = ("model",)
    search_fields = ("=document__id", "document__title")
    list_select_related = ("document",)
    raw_id_fields = ("document",)
    fields = (
        "document",
        "chunk_index",
        "model",
        "token_count",
        "source_text_hash",
        "document_text_hash",
        "source_text",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    show_full_result_count = False

    def get_queryset(self, request):
        return super().get_queryset(request).defer("embedding")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
