"""`manage.py process_queue`: the worker loop without a cluster, in one or several processes."""

import os
import subprocess
import sys

import pytest
from django.core.management import call_command

from documents.models import DocumentEmbedding, SourceDocument
from queue_admin.models import QueueItem
from tests.fault_server import FakeEmbedder
from tests.helpers import ROOT, database_url

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]


def test_until_empty_with_the_default_local_model(capsys):
    docs = SourceDocument.objects.bulk_create(
        SourceDocument(content=text)
        for text in ["A cat sits on the mat.", "Stock markets fell sharply today.", "   "]
    )
    call_command("process_queue", "--until-empty")
    out = capsys.readouterr().out
    assert "2 completed" in out and "documents/s" in out
    rows = DocumentEmbedding.objects.filter(document__in=docs)
    assert rows.count() == 2 and {r.model for r in rows} == {
        "sentence-transformers/all-MiniLM-L6-v2@onnx-int8"
    }


@pytest.mark.slow
def test_several_worker_processes_share_the_queue():
    SourceDocument.objects.bulk_create(SourceDocument(content=f"parallel document {n}") for n in range(300))
    with FakeEmbedder(dimensions=384) as service:
        env = dict(
            os.environ, DATABASE_URL=database_url(), DEBUG="1", EMBEDDING_PROVIDER="tei",
            EMBEDDING_BASE_URL=service.url, EMBEDDING_MODEL="fake-embedder-for-queue-tests",
        )  # fmt: skip
        result = subprocess.run(
            [sys.executable, "manage.py", "process_queue", "--workers", "3", "--until-empty"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "300 completed" in result.stdout and "by 3 worker(s)" in result.stdout
    assert QueueItem.objects.filter(status="completed").count() == 300
    assert DocumentEmbedding.objects.count() == 300


def test_bad_arguments_are_refused():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--workers must be at least 1"):
        call_command("process_queue", "--workers", "0")
