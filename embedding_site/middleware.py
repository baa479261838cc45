"""Give every web request an id that follows it through the logs and back to the caller, and
turn "the database is not answering" into a 503 that says so."""

import logging
import re
import time
import uuid

from django.db import InterfaceError, OperationalError, connections
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

from embedding_site.logs import request_id_var, scrub

logger = logging.getLogger("sidecar.request")

REQUEST_ID_HEADER = "X-Request-ID"
# What a proxy or load balancer typically sends (UUIDs, hex, short tokens). Anything else —
# too long, spaces, control characters, quotes — is replaced rather than echoed into our
# logs and response headers.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Load balancers poll these every few seconds; logging each healthy answer would drown the rest.
QUIET_PATHS = ("/healthz", "/readyz")


def request_id_for(header_value: str | None) -> str:
    """The caller's id when it looks sane, else a fresh one (32 hex digits)."""
    if header_value and SANE_REQUEST_ID.fullmatch(header_value):
        return header_value
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Sets ``request.request_id`` and the logging context var for the request's duration,
    echoes the id in the response's ``X-Request-ID``, and logs one line per request (method,
    path, status, duration) — except healthy answers to the health probes."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.request_id = request_id_for(request.headers.get(REQUEST_ID_HEADER))
        token = request_id_var.set(request.request_id)
        started = time.monotonic()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request.request_id
            if not (request.path in QUIET_PATHS and response.status_code < 400):
                logger.info(
                    "%s %s %s",
                    request.method,
                    request.path,
                    response.status_code,
                    extra={
                        "method": request.method,
                        "path": request.path,
                        "status_code": response.status_code,
                        "duration_ms": round((time.monotonic() - started) * 1000, 1),
                    },
                )
            return response
        finally:
            request_id_var.reset(token)


class DatabaseUnavailableMiddleware:
    """A request that fails because PostgreSQL is not answering (restarting, a failover, the
    network) gets a 503 that says so and when to try again — JSON for the API, a short page for
    people — instead of a 500. The broken connection is dropped, and the next request connects
    afresh (CONN_HEALTH_CHECKS), so nothing needs restarting when the database is back."""

    RETRY_AFTER_SECONDS = 30

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning(
            "database unavailable for %s %s: %s",
            request.method,
            request.path,
            scrub((str(exception).strip().splitlines() or [""])[0][:300]),
        )
        for connection in connections.all(initialized_only=True):
            connection.close_if_unusable_or_obsolete()
        if request.path.startswith("/api/"):
            response = JsonResponse(
                {"error": "The database is not answering; try again in a moment."}, status=503
            )
        else:
            # No request context: its processors (the user, messages) would ask the database.
            page = render_to_string("database_unavailable.html", {"retry_after": self.RETRY_AFTER_SECONDS})
            response = HttpResponse(page, status=503)
        response["Retry-After"] = str(self.RETRY_AFTER_SECONDS)
        return response
