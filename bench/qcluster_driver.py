"""The pipeline driven by a running `manage.py qcluster`, as deployed, for the `pipeline` scenario.

Steps: start the cluster (its own process group, DEBUG off, the configured local model);
wake a drain and wait until one is registered; embed a few warm-up documents so the drain's
model is loaded before the clock starts (the raw side excludes its load too); then insert
the documents and wait until every one of them is completed. The time runs from just before
the first insert to the last item's `processing_completed_at` (the database's clock, which
is this machine's). The cluster is stopped with SIGTERM, as `docker stop` does.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime

from bench import common
from bench.processes import ROOT, production_environment

WARM_UP_DOCUMENTS = 8
START_TIMEOUT_SECONDS = 90
POLL_SECONDS = 0.2


def _alive_drains() -> int:
    from queue_admin import registry

    return registry.alive_workers(":drain:").count()


def _completed_since(since: datetime) -> tuple[int, datetime | None]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), max(processing_completed_at) FROM embedding_queue "
            "WHERE status = 'completed' AND created_at >= %s",
            [since],
        )
        return cursor.fetchone()


def _wait_for(condition, timeout: float, what: str, log) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            log.seek(0)
            raise RuntimeError(f"qcluster: {what} within {timeout:.0f} s; its output:\n{log.read()[-3000:]}")
        time.sleep(POLL_SECONDS)


def qcluster_docs_per_second(documents: list[dict], warm_up: list[dict]) -> float:
    """Embed `documents` through a running qcluster; docs/s from first insert to last completion."""
    from django.utils import timezone

    from queue_admin.tasks import keep_drains_running

    common.empty_tables()
    with tempfile.TemporaryFile("w+") as log:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=production_environment(),
            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            keep_drains_running()  # the schedule would do it within a minute; do not wait for it
            _wait_for(lambda: _alive_drains() > 0, START_TIMEOUT_SECONDS, "no drain started", log)
            warm_since = timezone.now()
            common.insert_documents(warm_up)
            _wait_for(
                lambda: _completed_since(warm_since)[0] >= len(warm_up),
                START_TIMEOUT_SECONDS, "the warm-up documents were not embedded", log,
            )  # fmt: skip
            since = timezone.now()
            started = time.time()
            common.insert_documents(documents)
            _wait_for(
                lambda: _completed_since(since)[0] >= len(documents),
                max(300.0, len(documents) / 2), f"not all {len(documents)} documents were embedded", log,
            )  # fmt: skip
            finished = _completed_since(since)[1].timestamp()
        finally:
            cluster.send_signal(signal.SIGTERM)
            try:
                cluster.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(cluster.pid, signal.SIGKILL)
                cluster.wait()
    return len(documents) / (finished - started)
