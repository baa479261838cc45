"""The queue's words, written once: item statuses (and which of them are live, claimable or
retryable), priorities and error kinds. The models' choices and constraints, the queue SQL,
document state, the admin and the commands all use these; tests/queue/test_vocabulary.py checks
that the SQL spells no other status and that the error kinds are the providers' own."""

from django.db import models
from django.utils.translation import gettext_lazy as _

from documents.priority import Priority  # noqa: F401  (the queue's priorities are a source's)


class Status(models.TextChoices):
    PENDING = "pending", _("Pending")
    PROCESSING = "processing", _("Processing")
    COMPLETED = "completed", _("Completed")
    FAILED = "failed", _("Failed")
    RATE_LIMITED = "rate_limited", _("Rate Limited")
    CANCELLED = "cancelled", _("Cancelled")


class ErrorKind(models.TextChoices):
    """documents.providers.base.ERROR_KINDS, as the queue stores them."""

    TRANSIENT = "transient", _("Transient")
    RATE_LIMITED = "rate_limited", _("Rate Limited")
    PERMANENT = "permanent", _("Permanent")


# Work still to do: at most one such item per document.
LIVE = (Status.PENDING, Status.PROCESSING, Status.RATE_LIMITED)
# What a worker may claim once its next_attempt_at has come.
CLAIMABLE = (Status.PENDING, Status.RATE_LIMITED)
# What only a person moves on (retry): a dead letter, or what a person cancelled.
RETRYABLE = (Status.FAILED, Status.CANCELLED)


def sql_list(values) -> str:
    """Our own constants as SQL literals for an IN list: "'pending', 'rate_limited'"."""
    return ", ".join(f"'{value}'" for value in values)
