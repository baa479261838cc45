"""Health endpoints: no authentication (they reveal no keys, URLs or data), never cached.
/metrics: a bearer token (console/metrics.py decides who may read it)."""

from django.http import HttpResponse, HttpResponsePermanentRedirect, HttpResponseServerError, JsonResponse
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from console import health
from console import metrics as metrics_module


@never_cache
@require_safe
def healthz(request):
    return JsonResponse(health.liveness())


@never_cache
@require_safe
def readyz(request):
    ready, body = health.readiness(strict=request.GET.get("strict") in ("1", "true", "yes"))
    return JsonResponse(body, status=200 if ready else 503)


@never_cache
@require_safe
def metrics(request):
    denied = metrics_module.check_access(request)
    if denied:
        status, message = denied
        response = HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_module.exposition(), content_type=CONTENT_TYPE_LATEST)


@require_safe
def favicon(request):
    """Browsers ask for /favicon.ico whatever a page links: send them to the static icon (its
    hashed name in production, so resolved per request, not when the URLs load)."""
    return HttpResponsePermanentRedirect(static("console/favicon.svg"))


def server_error(request):
    """handler500 (DEBUG off): no traceback, no exception text, just the request id that
    finds the logged error. Rendered without context processors, which would query the
    database (that may be what failed)."""
    request_id = getattr(request, "request_id", "")
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "Internal error; it was logged.", "request_id": request_id}, status=500)
    return HttpResponseServerError(render_to_string("500.html", {"request_id": request_id}))
