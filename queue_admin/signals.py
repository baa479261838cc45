"""Django-side effects only: wake a drain right after a document is committed through Django.

Correctness never depends on this — the triggers queue the work and running drains poll for
it — it only saves an idle cluster the wait for its next schedule tick.
"""

import logging
import time

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from documents.models import SourceDocument

logger = logging.getLogger("sidecar.tasks")

# One wake-up check per process per second is plenty, whatever the write rate.
_THROTTLE_SECONDS = 1.0
_last_wake = {"at": float("-inf")}


@receiver(post_save, sender=SourceDocument, dispatch_uid="sidecar-wake-drains")
def wake_drains_after_commit(sender, **kwargs):
    now = time.monotonic()
    if now - _last_wake["at"] < _THROTTLE_SECONDS:
        return
    _last_wake["at"] = now
    transaction.on_commit(_wake)


def _wake():
    from queue_admin.tasks import keep_drains_running

    try:
        keep_drains_running()
    except Exception:  # waking is an optimisation: never fail the writer's request for it
        logger.exception("could not wake a drain task")
