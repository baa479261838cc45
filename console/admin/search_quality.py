"""The admin's Search quality page (/admin/search/quality/), a site-wide page (PAGE_MODULES).

How big the test set is (the queries judged on the search page with at least one relevant
result), a button that runs an evaluation (`queue_admin.search_quality.evaluate`, synchronous:
a few dozen queries take seconds), the runs so far with what each ran under, and the trend of
nDCG@10 per mode. Whoever may search may judge and evaluate: an evaluation runs only searches
they could run by hand.
"""

import logging

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _

from console.admin.search import PERMISSION
from documents.keyword_index import KeywordIndexError
from documents.models import DocumentEmbedding, EvaluationRun
from documents.providers.base import EmbeddingError
from documents.search import MODES, SearchError
from queue_admin import search_quality
from queue_admin.searching import choose_provider

logger = logging.getLogger("sidecar.search")

RUNS_SHOWN = 20
SPARKLINE_WIDTH, SPARKLINE_HEIGHT = 160, 30


def urls(site):
    page = site.admin_view(lambda request: quality_page(site, request))
    return [path("search/quality/", page, name="search_quality")]


def app_list_entry(site, request):
    """The page's line under "Documents" on the admin index and in the navigation sidebar."""
    if not request.user.has_perm(PERMISSION):
        return None
    entry = {
        "name": _("Search quality"),
        "object_name": "SearchQuality",
        "admin_url": reverse("admin:search_quality", current_app=site.name),
        "add_url": None,
        "view_only": True,
        "perms": {"view": True},
    }
    return "documents", entry


def quality_page(site, request):
    """GET shows the test set and the runs; POST runs an evaluation, then shows them (redirect)."""
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    if request.method == "POST":
        _run(request)
        return HttpResponseRedirect(reverse("admin:search_quality", current_app=site.name))
    queries = search_quality.test_set()
    runs = list(EvaluationRun.objects.select_related("ran_by")[:RUNS_SHOWN])
    for run in runs:  # in the columns' order, whatever order jsonb keeps the keys in
        run.figures = [(mode, run.metrics.get(mode)) for mode in MODES]
    model = choose_provider().model_id
    context = {
        **site.each_context(request),
        "title": _("Search quality"),
        "queries": len(queries),
        "judged_documents": sum(len(relevant) for relevant in queries.values()),
        "runs": runs,
        "modes": MODES,
        "trend": trend(runs),
        "embedded": DocumentEmbedding.objects.filter(model=model).exists(),
    }
    return TemplateResponse(request, "admin/documents/search_quality.html", context)


def _run(request):
    try:
        run = search_quality.evaluate(search_quality.test_set(), user=request.user, ran_from="admin")
    except (ValueError, SearchError, KeywordIndexError, EmbeddingError) as exc:
        logger.warning("search evaluation failed: %s", exc)
        messages.error(request, f"The evaluation did not run: {exc}")
        return
    hybrid = run.metrics["hybrid"]
    messages.success(
        request,
        f"Evaluated {run.queries} queries: hybrid nDCG@10 {hybrid['ndcg_10']:.3f}, MRR {hybrid['mrr']:.3f}.",
    )


def trend(runs) -> list[dict]:
    """Per mode, nDCG@10 over the runs shown (oldest first) as an SVG polyline's points, on a
    fixed 0..1 scale so that lines of different modes and pages compare."""
    oldest_first = list(reversed(runs))
    lines = []
    for mode in MODES:
        values = [run.metrics.get(mode, {}).get("ndcg_10") for run in oldest_first]
        values = [value for value in values if value is not None]
        if not values:
            continue
        step = SPARKLINE_WIDTH / max(len(values) - 1, 1)
        points = " ".join(
            f"{index * step:.1f},{(1 - value) * (SPARKLINE_HEIGHT - 2) + 1:.1f}"
            for index, value in enumerate(values)
        )
        lines.append({"mode": mode, "points": points, "last": values[-1], "first": values[0]})
    return lines
