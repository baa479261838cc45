"""`make demo`'s moving parts, as plain functions (the `demo` command strings them together):
how far the embedding of the documents has come, the workers and the web server as child
processes whose output goes to a log file, and waiting for the server to answer.
"""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from django.conf import settings
from django.db.models import Count, OuterRef, Q, Subquery

from documents.models import SourceDocument
from queue_admin import vocabulary
from queue_admin.models import QueueItem


@dataclass(frozen=True)
class Progress:
    total: int  # documents
    waiting: int  # documents with work still to do (live queue items)
    failed: int  # documents whose newest item failed (dead letters: a person decides)

    @property
    def done(self) -> int:
        return self.total - self.waiting

    @property
    def finished(self) -> bool:
        return self.waiting == 0


def embedding_progress() -> Progress:
    """Documents, those with live queue items, and those whose newest item failed."""
    newest = QueueItem.objects.filter(document=OuterRef("pk")).order_by("-created_at").values("status")[:1]
    figures = SourceDocument.objects.annotate(newest=Subquery(newest)).aggregate(
        total=Count("pk"),
        waiting=Count("pk", filter=Q(newest__in=vocabulary.LIVE)),
        failed=Count("pk", filter=Q(newest=vocabulary.Status.FAILED)),
    )
    return Progress(figures["total"], figures["waiting"], figures["failed"])


def log_path() -> Path:
    return Path(settings.BASE_DIR) / ".data" / "demo.log"


def start(arguments: list[str], log, verbose: bool) -> subprocess.Popen:
    """`manage.py ARGUMENTS` in a process group of its own (Ctrl-C reaches it through us, in
    order), its output appended to `log` unless `verbose`."""
    output = None if verbose else log
    return subprocess.Popen(
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), *arguments],
        stdout=output,
        stderr=output,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def stop(processes: list[subprocess.Popen], patience: float = 15.0) -> None:
    """SIGTERM to each one's process group (the workers finish their batch, the server stops),
    then SIGKILL after `patience`. SIGTERM, not SIGINT: a process started in the background by
    a non-interactive shell inherits SIGINT ignored, and would never stop."""
    for process in processes:
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + patience
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()


def _signal_group(process: subprocess.Popen, number: int) -> None:
    try:
        os.killpg(process.pid, number)
    except ProcessLookupError:  # the whole group is gone already
        pass


def wait_until_answering(url: str, server: subprocess.Popen, timeout: float = 60.0) -> bool:
    """Whether `url` answered (any status) before `timeout`, or before the server exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            httpx.get(url, timeout=2.0)
            return True
        except httpx.TransportError:
            time.sleep(0.3)
    return False
