"""The django-q2 cluster end to end: `manage.py qcluster` drains the queue through a real
HTTP embedding service on loopback (a fake one: this is about the workers, not the model)."""

import os
import signal
import subprocess
import sys

import pytest

from documents.models import DocumentEmbedding, SourceDocument
from queue_admin.models import QueueItem, Worker
from tests.fault_server import FakeEmbedder
from tests.helpers import ROOT, database_url, wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_config"),
    pytest.mark.slow,
]


@pytest.fixture
def embedding_service():
    with FakeEmbedder(dimensions=384) as server:
        yield server


@pytest.fixture
def cluster_env(embedding_service, settings):
    env = dict(
        os.environ,
        DATABASE_URL=database_url(),
        DEBUG="1",
        EMBEDDING_PROVIDER="tei",
        EMBEDDING_BASE_URL=embedding_service.url,
        EMBEDDING_MODEL="fake-embedder-for-queue-tests",
    )
    # This process wakes drains on commit and must name the same model as the cluster.
    for key in ("EMBEDDING_PROVIDER", "EMBEDDING_BASE_URL", "EMBEDDING_MODEL"):
        setattr(settings, key, env[key])
    from documents.providers import factory

    factory.get_provider.cache_clear()
    yield env
    factory.get_provider.cache_clear()


def test_qcluster_embeds_new_documents_and_stops_cleanly(cluster_env, embedding_service):
    cluster = subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=cluster_env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        docs = [SourceDocument.objects.create(content=f"written through Django {n}") for n in range(20)]
        wait_until(
            lambda: QueueItem.objects.filter(status="completed").count() == 20,
            90,
            lambda: f"not drained: {list(QueueItem.objects.values_list('status', flat=True))}",
        )
        assert DocumentEmbedding.objects.filter(document__in=docs).count() == 20
        assert DocumentEmbedding.objects.values("model").distinct().count() == 1
        assert embedding_service.count("/embed") >= 1
        assert Worker.objects.filter(worker_id__contains=":drain:").exists()
    finally:
        cluster.send_signal(signal.SIGTERM)  # as `docker stop` does: the main process only
        try:
            output = cluster.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            # What held it: a drain still running 20 s after its stop signal printed its threads.
            os.killpg(cluster.pid, signal.SIGKILL)
            pytest.fail(
                f"qcluster did not stop within 30 s of SIGTERM; its output:\n{cluster.communicate()[0][-30000:]}"
            )
        finally:
            if cluster.poll() is None:
                os.killpg(cluster.pid, signal.SIGKILL)
    assert not QueueItem.objects.filter(status="processing").exists(), output
    assert not Worker.objects.filter(status__in=["active", "idle"], worker_id__contains=":drain:").exists(), (
        output
    )
