"""The documents list's embedding columns and status filter (documents/embedding_status.py)."""

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList

from documents import embedding_status


class DocumentChangeList(ChangeList):
    """The page's rows get their status, chunk count and model in one more query, for those
    rows only (`embedding_status.for_page`)."""

    def get_results(self, request):
        super().get_results(request)
        self.result_list = embedding_status.for_page(self.result_list, self.model_admin.embedding_model())


class EmbeddingStatusFilter(admin.SimpleListFilter):
    """Each choice is a WHERE clause of indexed EXISTS tests (documents/embedding_status.py),
    not a computed column, so PostgreSQL can run it as semi- and anti-joins."""

    title = "embedding status"
    parameter_name = "embedding"

    def __init__(self, request, params, model, model_admin):
        self.model_admin = model_admin
        super().__init__(request, params, model, model_admin)

    def lookups(self, request, model_admin):
        return embedding_status.CHOICES

    def queryset(self, request, queryset):
        status = self.value()
        if status is None:
            return queryset
        if status not in embedding_status.LABELS:
            return queryset.none()  # a hand-edited URL: an empty list, like Django's own filters
        return embedding_status.filter_status(queryset, status, self.model_admin.embedding_model())
