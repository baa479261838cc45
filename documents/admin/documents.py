from django.contrib import admin
from django.db.models.functions import Length

from documents.admin.importing import DocumentImportMixin
from documents.models import DocumentEmbedding, SourceDocument


class DocumentEmbeddingInline(admin.TabularInline):
    model = DocumentEmbedding
    fields = ("chunk_index", "model", "token_count", "source_text_hash", "updated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("model", "chunk_index")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(SourceDocument)
class SourceDocumentAdmin(DocumentImportMixin, admin.ModelAdmin):
    list_display = ("__str__", "content_length", "updated_at", "created_at")
    search_fields = ("title", "=id")
    readonly_fields = ("id", "created_at", "updated_at")
    fields = ("id", "title", "content", "metadata", "created_at", "updated_at")
    date_hierarchy = "updated_at"
    inlines = [DocumentEmbeddingInline]
    # Large tables: no per-page COUNT(*) of the whole result.
    show_full_result_count = False

    @admin.display(description="characters", ordering="content_chars")
    def content_length(self, obj):
        return obj.content_chars

    def get_queryset(self, request):
        # The list never loads whole texts (documents may be megabytes); PostgreSQL counts.
        return super().get_queryset(request).annotate(content_chars=Length("content")).defer("content")
