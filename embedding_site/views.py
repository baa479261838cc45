"""Health endpoints: no authentication (they reveal no keys, URLs or data), never cached."""

from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from embedding_site import health


@never_cache
@require_safe
def healthz(request):
    return JsonResponse(health.liveness())


@never_cache
@require_safe
def readyz(request):
    ready, body = health.readiness(strict=request.GET.get("strict") in ("1", "true", "yes"))
    return JsonResponse(body, status=200 if ready else 503)
