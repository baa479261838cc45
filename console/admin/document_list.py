"""The documents list's embedding columns and status filter (queue_admin/document_state.py),
and its filter by source."""

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList

from documents.models import Source
from queue_admin import document_state


class DocumentChangeList(ChangeList):
    """The page's rows get their status, chunk count and model in one more query, for those
    rows only (`document_state.for_page`)."""

    def get_results(self, request):
        super().get_results(request)
        self.result_list = document_state.for_page(self.result_list, self.model_admin.embedding_model())


class EmbeddingStatusFilter(admin.SimpleListFilter):
    """Each choice is a WHERE clause of indexed EXISTS tests (queue_admin/document_state.py),
    not a computed column, so PostgreSQL can run it as semi- and anti-joins."""

    title = "embedding status"
    parameter_name = "embedding"

    def __init__(self, request, params, model, model_admin):
        self.model_admin = model_admin
        super().__init__(request, params, model, model_admin)

    def lookups(self, request, model_admin):
        return document_state.CHOICES

    def queryset(self, request, queryset):
        status = self.value()
        if status is None:
            return queryset
        if status not in document_state.LABELS:
            return queryset.none()  # a hand-edited URL: an empty list, like Django's own filters
        return document_state.filter_status(queryset, status, self.model_admin.embedding_model())


class SourceFilter(admin.SimpleListFilter):
    """By source, once there is more than Sidecar's own; the (source_id, source_key) index
    serves it."""

    title = "source"
    parameter_name = "source"

    def lookups(self, request, model_admin):
        choices = [(str(pk), name) for pk, name in Source.objects.order_by("name").values_list("pk", "name")]
        return choices if len(choices) > 1 else []

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        if not self.value().isdigit():
            return queryset.none()  # a hand-edited URL, as EmbeddingStatusFilter answers it
        return queryset.filter(source_id=int(self.value()))
