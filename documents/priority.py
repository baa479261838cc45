"""How urgent a document's embedding is: a source's default, and the queue's priorities
(queue_admin.vocabulary takes it from here, so both layers speak the same three words)."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Priority(models.TextChoices):
    HIGH = "high", _("High")
    MEDIUM = "medium", _("Medium")
    LOW = "low", _("Low")
