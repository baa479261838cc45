"""Give every web request an id that follows it through the logs and back to the caller."""

import logging
import re
import time
import uuid

from embedding_site.logs import request_id_var

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
