"""Which models' vector indexes to build now, and starting their builds: the queue's side of
the vector index policy (documents/vector_index.py has the policy and all of the index SQL).

The models that matter are the configured one and, during a model change, the previous one
(search's). The configured model's backlog is the queue's live items: what it still has to
write. The `maintain_vector_indexes` schedule (every minute) runs `start_due_builds`; a build
runs in its own process (`manage.py vector_index build MODEL`), because a large one outlasts a
task's timeout and must not hold one of the cluster's worker processes for an hour.
"""

import logging
import subprocess
import sys

from django.conf import settings

from documents import vector_index
from documents.providers.factory import get_previous_provider, get_provider
from queue_admin import queue_counts, vocabulary

logger = logging.getLogger("sidecar.vector_index")


def models_in_use() -> list[tuple[str, bool]]:
    """[(model, whether it serves search now)]: the configured model, and the previous one
    while search still uses it."""
    from queue_admin.searching import choose_provider

    current = get_provider().model_id
    previous = get_previous_provider()
    if previous is None or previous.model_id == current:
        return [(current, True)]
    serving = choose_provider().model_id
    return [(current, serving == current), (previous.model_id, serving == previous.model_id)]


def queued_documents() -> int:
    """Documents the workers still have to write (live queue items)."""
    counts = queue_counts.by_status_and_priority()
    return sum(count.value for status in vocabulary.LIVE for count in counts[status].values())


def states() -> list[vector_index.IndexState]:
    """Every model in use's index state (for the dashboard, /readyz and the shell)."""
    return [vector_index.state(model) for model, _ in models_in_use()]


def due_builds() -> list[str]:
    """The models whose index the policy wants built now and nobody is building."""
    current = get_provider().model_id
    queued = queued_documents()
    due = []
    for model, serving in models_in_use():
        backlog = queued if model == current else 0
        if vector_index.wants_index(model, queued=backlog, serving=serving):
            if vector_index.state(model).state != "building":
                due.append(model)
    return due


def start_build(model: str) -> subprocess.Popen:
    """`manage.py vector_index build MODEL` in a process of its own session, so it outlives the
    task (and a restart of the cluster's worker processes); its log lines go where ours go."""
    return subprocess.Popen(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), "vector_index", "build", model],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )


def start_due_builds(start=start_build) -> list[str]:
    """Start a build for each model due one; returns those models."""
    due = due_builds()
    for model in due:
        logger.info("starting the HNSW index build of %s", model)
        start(model)
    return due
