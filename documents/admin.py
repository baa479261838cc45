from django.contrib import admin, messages
from django.db.models.functions import Length
from django.utils import timezone

from documents.models import ApiToken, DocumentEmbedding, SourceDocument


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
class SourceDocumentAdmin(admin.ModelAdmin):
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


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Create a token (its plaintext is shown once, in a message) or revoke it (an action).
    The hash and the dates are the machine's: read-only."""

    list_display = ("name", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "user__username")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    readonly_fields = ("token_hash", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("user", "name")
        return ("user", "name", "token_hash", "created_at", "last_used_at", "revoked_at")

    def get_readonly_fields(self, request, obj=None):
        # A token stays with the user it was issued to.
        return self.readonly_fields + (("user",) if obj is not None else ())

    def save_model(self, request, obj, form, change):
        if not change:
            plaintext = obj.set_new_token()
            super().save_model(request, obj, form, change)
            self.message_user(
                request,
                f"API token for {obj.user}: {plaintext} — copy it now, it will not be shown again.",
                messages.WARNING,
            )
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke selected API tokens")
    def revoke(self, request, queryset):
        revoked = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(
            request, f"Revoked {revoked} API token{'s' if revoked != 1 else ''}.", messages.SUCCESS
        )
