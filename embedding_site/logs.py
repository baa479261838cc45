"""Log records as JSON lines (or readable console lines), with a request id and no secrets.

Settings wire these into ``LOGGING`` (``LOG_FORMAT=json|console``); both formats go through
the same two filters on the handler, so every record from every logger — ours, Django's,
httpx's, django-q2's — is stamped and scrubbed before anything is written:

* ``RequestIdFilter`` copies the current web request's id (``request_id_var``, set by
  ``embedding_site.middleware.RequestIdMiddleware``) onto the record;
* ``SecretScrubFilter`` replaces configured API keys, ``Authorization: Bearer`` values and
  passwords in database URLs in the message, its arguments, ``extra=`` fields and tracebacks.

A JSON line holds ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``event`` (the message with
its %-arguments applied), then every ``extra=`` field (``batch_id``, ``worker_id``, ...),
``request_id`` during a web request, and ``exc_info`` when there is a traceback.
"""

import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

# None outside a web request (workers, commands): those records carry no request_id.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

REDACTED = "[redacted]"
# Values shorter than this are not treated as secrets: replacing every "a" in a log line
# would destroy it and protect nothing.
MIN_SECRET_LENGTH = 6
# The setting names whose values are secrets; read at each record so overridden settings
# (tests, a reloaded process) are honoured.
SECRET_SETTINGS = (
    "EMBEDDING_API_KEY",
    "EMBEDDING_FALLBACK_API_KEY",
    "EMBEDDING_PREVIOUS_API_KEY",
    "METRICS_TOKEN",
    "SECRET_KEY",
)

_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s'\",;]+")
# scheme://user:PASSWORD@host — the password runs to the last @ before the host.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@'\"]*:)[^\s/'\"]*(@)")
# Text-form parameters (psycopg messages, DSNs): password=... / "password": "..."
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword\s*[=:]\s*['\"]?)[^\s'\",;&]+")


def _configured_secrets() -> list[str]:
    from django.conf import settings

    if not settings.configured:
        return []
    values = [getattr(settings, name, "") or "" for name in SECRET_SETTINGS]
    values += [db.get("PASSWORD") or "" for db in getattr(settings, "DATABASES", {}).values()]
    # Longest first, so a secret that contains another is replaced whole.
    return sorted(
        {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True
    )


def scrub(text: str) -> str:
    """``text`` with configured secrets, bearer tokens and URL/DSN passwords replaced."""
    for secret in _configured_secrets():
        text = text.replace(secret, REDACTED)
    text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
    text = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}\g<2>", text)
    return _PASSWORD_PARAM.sub(rf"\g<1>{REDACTED}", text)


# Attributes every LogRecord has; anything else on a record came from `extra=` or a filter.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class SecretScrubFilter(logging.Filter):
    """Scrub each record in place; never drops one.

    Steps: render the message with its arguments and scrub it (a secret may sit in either);
    scrub string ``extra=`` fields; render the traceback once and keep the scrubbed text in
    ``exc_text``, which formatters use instead of rendering it again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what was given, readable
            message = f"{record.msg} {record.args}"
        record.msg, record.args = scrub(message), None
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and isinstance(value, str):
                setattr(record, key, scrub(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


class RequestIdFilter(logging.Filter):
    """Attach the current request's id, if any, as ``request_id``.

    Django logs a 4xx/5xx response (``django.request``) after the middleware has returned, when
    the context var is reset; those records carry the request itself, which holds the id.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = request_id_var.get() or getattr(getattr(record, "request", None), "request_id", None)
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


class JsonFormatter(_LibraryJsonFormatter):
    """python-json-logger with our field names: ts, level, logger, event, then the extras."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("fmt", "%(message)s")
        kwargs.setdefault("rename_fields", {"message": "event"})
        super().__init__(*args, **kwargs)

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        # ts, level and logger first, so a person reading the raw lines sees them first.
        log_data["ts"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        super().add_fields(log_data, record, message_dict)

    def formatException(self, ei) -> str:  # noqa: N802 - logging's name
        # The scrub filter has rendered and cleaned the traceback already; don't redo it raw.
        return scrub(super().formatException(ei))


class ConsoleFormatter(logging.Formatter):
    """Readable lines for development, with the request id when there is one."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [request_id={request_id}]" if request_id else line
