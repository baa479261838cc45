"""How urgent a document's embedding is: a source's default, and the queue's priorities
(queue_admin.vocabulary takes it from here, so both layers speak the same three words)."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Priority(models.TextChoices):
    HIGH = "high", _("High")
    MEDIUM = "medium", _("Medium")
    LOW = "low", _("Low")


def in_words(priority: str) -> str:
    """A priority as a sentence names it, in the reader's language: "high", "hoch"; anything
    else as it is."""
    return str(Priority(priority).label).lower() if priority in Priority.values else priority
