"""How urgent a document's embedding is: a source's default, and the queue's priorities
(queue_admin.vocabulary takes it from here, so both layers speak the same three words)."""

from django.db import models


class Priority(models.TextChoices):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
