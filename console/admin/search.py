"""The admin's search page (/admin/search/), a site-wide page (PAGE_MODULES).

A query box, a number of results and, once there is more than Sidecar's own documents, a
source; answers with rank, score, title (linking to the document), its source and its key
there, a snippet of the best chunk with the query's words marked, the model that answered and
how many documents it does not cover yet. It runs `queue_admin.searching.search` in its
default (hybrid) mode, as the API and `manage.py search` do. Every bad input and outage
becomes a message on the page.

The form posts (a pasted paragraph would overflow a GET line: gunicorn refuses request
lines over 4 KB); `/admin/search/?q=...&k=...` works as a link too.

Each result can be judged "relevant" or "not relevant" to the query (a small form posting to
/admin/search/judge/, with the search's fields, so the same results come back): those
judgments are the test set that the Search quality page (search_quality.py) measures.
"""

import logging
import uuid

from django import forms
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest, HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.text import format_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from documents.keyword_index import KeywordIndexError
from documents.models import DocumentEmbedding, Source, SourceDocument, normalize_query
from documents.providers.base import EmbeddingError
from documents.search import (
    BAND_LABELS,
    DEFAULT_MODE,
    MAX_QUERY_CHARACTERS,
    MODES,
    SearchError,
    check_query,
    check_time_range,
    parse_metadata_filter,
    parse_time,
    relevance,
    relevance_explained,
)
from queue_admin import search_quality
from queue_admin.searching import choose_provider, documents_not_covered, search

logger = logging.getLogger("sidecar.search")

PERMISSION = "documents.search_sourcedocument"
RESULT_COUNTS = (5, 10, 20, 50)
MODE_CHOICES = [
    ("hybrid", gettext_lazy("Hybrid (words and meaning)")),
    ("vector", gettext_lazy("Meaning only (vector)")),
    ("keyword", gettext_lazy("Words only (keyword)")),
]


class SearchForm(forms.Form):
    q = forms.CharField(
        label=gettext_lazy("Query"),
        required=False,  # an empty query gets its own message below
        widget=forms.TextInput(
            attrs={"size": 70, "autofocus": True, "placeholder": gettext_lazy("What are you looking for?")}
        ),
    )
    k = forms.TypedChoiceField(
        label=gettext_lazy("Results"),
        choices=[(n, n) for n in RESULT_COUNTS],
        coerce=int,
        initial=10,
        empty_value=10,
        required=False,
    )
    source = forms.ChoiceField(
        label=gettext_lazy("Source"),
        required=False,
        error_messages={
            "invalid_choice": gettext_lazy("There is no source named %(value)s: choose one from the list.")
        },
    )
    mode = forms.ChoiceField(
        label=gettext_lazy("Mode"),
        choices=MODE_CHOICES,
        initial=DEFAULT_MODE,
        required=False,
        error_messages={
            "invalid_choice": format_lazy(gettext_lazy("Choose a mode: {modes}."), modes=", ".join(MODES))
        },
    )
    metadata = forms.CharField(
        label=gettext_lazy("Metadata contains"),
        required=False,
        widget=forms.TextInput(attrs={"size": 30, "placeholder": '{"lang": "en"}'}),
        help_text=gettext_lazy("Only documents whose metadata contains this JSON object."),
    )
    updated_after = forms.CharField(
        label=gettext_lazy("Updated from"),
        required=False,
        widget=forms.TextInput(attrs={"size": 12, "placeholder": "2026-01-31"}),
    )
    updated_before = forms.CharField(
        label=gettext_lazy("before"),
        required=False,
        widget=forms.TextInput(attrs={"size": 12, "placeholder": "2026-12-31"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        names = list(Source.objects.order_by("name").values_list("name", flat=True))
        self.fields["source"].choices = [("", _("All sources")), *((name, name) for name in names)]
        self.several_sources = len(names) > 1

    def clean_q(self):
        query = self.cleaned_data["q"]
        if not query:
            raise forms.ValidationError(_("Type a few words to search for."))
        if len(query) > MAX_QUERY_CHARACTERS:
            raise forms.ValidationError(
                _(
                    "The query has %(length)s characters; the most is %(most)s. A sentence or two finds documents best."
                )
                % {"length": f"{len(query):,}", "most": f"{MAX_QUERY_CHARACTERS:,}"}
            )
        try:
            check_query(query)  # control characters, undecodable bytes: the API's rules
        except SearchError as exc:
            raise forms.ValidationError(str(exc)) from None
        return query

    def clean_mode(self):
        return self.cleaned_data["mode"] or DEFAULT_MODE

    def clean_metadata(self):
        text = self.cleaned_data["metadata"].strip()
        try:
            return parse_metadata_filter(text) if text else None
        except SearchError as exc:
            raise forms.ValidationError(str(exc)) from None

    def _moment(self, name: str):
        text = self.cleaned_data[name].strip()
        try:
            return parse_time(text, self.fields[name].label) if text else None
        except SearchError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_updated_after(self):
        return self._moment("updated_after")

    def clean_updated_before(self):
        return self._moment("updated_before")

    def clean(self):
        data = super().clean()
        try:
            check_time_range(data.get("updated_after"), data.get("updated_before"))
        except SearchError as exc:
            self.add_error("updated_before", str(exc))
        return data

    def filters(self) -> dict:
        """searching.search's filter arguments from the cleaned form."""
        data = self.cleaned_data
        return {
            "source": data["source"] or None,
            "metadata": data["metadata"],
            "updated_after": data["updated_after"],
            "updated_before": data["updated_before"],
        }

    @property
    def filtered(self) -> bool:
        """Whether the filters beyond the source were given (they open on the page if so)."""
        return any(self[name].value() for name in ("metadata", "updated_after", "updated_before"))


def urls(site):
    return [
        path("search/", site.admin_view(lambda request: search_page(site, request)), name="search"),
        path(
            "search/judge/", site.admin_view(lambda request: judge_page(site, request)), name="search_judge"
        ),
    ]


def app_list_entry(site, request):
    """The page's line under "Documents" on the admin index and in the navigation sidebar."""
    if not request.user.has_perm(PERMISSION):
        return None
    entry = {
        "name": _("Semantic search"),
        "object_name": "SemanticSearch",
        "admin_url": reverse("admin:search", current_app=site.name),
        "add_url": None,
        "view_only": True,
        "perms": {"view": True},
    }
    return "documents", entry


def search_page(site, request, data=None):
    """Steps: check the permission (403); with a query, validate it and search; render the form,
    the results, or a message saying why there are none."""
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    if data is None:
        data = (request.POST if request.method == "POST" else request.GET).copy()
    if "k" not in data:  # a link with only ?q=: show the default that is used
        data["k"] = str(SearchForm.base_fields["k"].initial)
    form = SearchForm(data if "q" in data else None)
    context = {
        **site.each_context(request),
        "title": _("Semantic search"),
        "form": form,
        "can_backfill": request.user.has_perm("documents.reembed_sourcedocument"),
    }
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        context.update(_search(data["q"], data["k"], form, mode=data["mode"], **form.filters()))
        if context.get("hits"):
            _add_judgments(context["hits"], data["q"])
            # Each result's judge form posts the search's fields back, whatever fields it has.
            context["carried_fields"] = [
                (name, value)
                for name, values in form.data.lists()
                if name not in JUDGE_FIELDS
                for value in values
            ]
    return TemplateResponse(request, "admin/documents/search.html", context)


# The judge form's own fields; everything else it posts is the search form's, carried back.
JUDGE_FIELDS = ("judge_document", "judge_relevant", "csrfmiddlewaretoken")


def judge_page(site, request):
    """Record "relevant" / "not relevant" for one result, then show the same query's results
    again (rendered here rather than redirected: the query may be a paragraph, too long for
    the URL of a redirect)."""
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    query = request.POST.get("q", "")
    document = request.POST.get("judge_document", "")
    if not normalize_query(query) or not SourceDocument.objects.filter(pk=_uuid_or_none(document)).exists():
        return HttpResponseBadRequest("A judgment needs the query and a document that exists.")
    search_quality.judge(query, document, request.POST.get("judge_relevant") == "1", request.user)
    data = request.POST.copy()
    for name in JUDGE_FIELDS:
        data.pop(name, None)
    return search_page(site, request, data)


def _add_judgments(rows, query):
    judged = search_quality.judgments_for(query, [row["hit"].document_id for row in rows])
    for row in rows:
        row["judgment"] = judged.get(str(row["hit"].document_id))


def _uuid_or_none(text):
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _search(
    query: str, k: int, form, *, mode: str = DEFAULT_MODE, source: str | None = None, **filters
) -> dict:
    """The page's answer: `hits`, or `empty_index`, or `outage` (the provider's error)."""
    model = choose_provider().model_id
    if not DocumentEmbedding.objects.filter(model=model).exists():
        # Nothing to find: say so without embedding the query (or loading the model).
        return {"empty_index": True, "model": model, "not_covered": documents_not_covered(model)}
    try:
        result = search(query, k, mode=mode, source=source, **filters)
    except SearchError as exc:  # the form checks the same things; kept as a safety net
        form.add_error("q", str(exc))
        return {}
    except KeywordIndexError as exc:
        logger.error("admin search failed: keyword search is unavailable (%s)", exc)
        return {"keyword_index_error": str(exc), "model": model}
    except EmbeddingError as exc:
        # The provider's address and answer go to the log, not the page.
        logger.warning("admin search failed: the embedding provider is unavailable (%s)", exc)
        return {"outage": exc, "model": model}
    hits = [
        {
            "rank": rank,
            "hit": hit,
            "url": reverse("admin:documents_sourcedocument_change", args=[hit.document_id]),
            "relevance": relevance(hit),
            "relevance_label": BAND_LABELS[relevance(hit)],
            "score_explained": relevance_explained(hit, result.mode),
        }
        for rank, hit in enumerate(result.hits, start=1)
    ]
    return {
        "hits": hits,
        "model": result.model,
        "not_covered": result.documents_not_covered,
        "searched": True,
        "source": source,
        "mode": result.mode,
        "notices": result.notices,
    }
