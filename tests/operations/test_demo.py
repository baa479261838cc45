"""`make demo`: quiet lines, a progress line, the address last; the figures behind the progress
line; a favicon; and a request logged once by the development server."""

import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from documents.models import SourceDocument
from queue_admin import demo
from queue_admin.models import QueueItem
from tests.helpers import ROOT, database_url, free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]


def test_progress_counts_documents_done_waiting_and_failed():
    documents = SourceDocument.objects.bulk_create(SourceDocument(content=f"text {n}") for n in range(3))
    assert demo.embedding_progress() == demo.Progress(
        total=3, waiting=3, failed=0
    )  # the triggers queued them
    QueueItem.objects.filter(document=documents[0]).update(status="completed")
    QueueItem.objects.filter(document=documents[1]).update(status="failed")
    progress = demo.embedding_progress()
    assert (progress.total, progress.waiting, progress.failed, progress.done) == (3, 1, 1, 2)
    assert not progress.finished
    QueueItem.objects.filter(document=documents[2]).update(status="completed")
    assert demo.embedding_progress().finished


def test_the_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("console/favicon.svg")
    assert 'rel="icon" href="/static/console/favicon.svg"' in client.get("/admin/login/").content.decode()


def environment(**extra):
    return dict(os.environ, DATABASE_URL=database_url(), DEBUG="1", PYTHONUNBUFFERED="1", **extra)


def kill_processes_marked(marker: str) -> None:
    """SIGKILL every process whose environment holds SIDECAR_TEST_MARKER=marker (the demo's
    children inherit it), so a failed test cannot leave workers running on the test database."""
    needle = f"SIDECAR_TEST_MARKER={marker}".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as environ:
                    if needle in environ.read().split(b"\0"):
                        os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass


@pytest.mark.slow
def test_the_development_server_logs_a_request_once():
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/admin/login/", timeout=5).status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        time.sleep(0.5)  # the log line is written after the response
    finally:
        server.terminate()
        try:
            output = server.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            server.kill()
            output = server.communicate()[0]
    assert [line for line in output.splitlines() if "/admin/login/" in line] == [
        line for line in output.splitlines() if "GET /admin/login/ 200" in line
    ]
    assert sum("/admin/login/" in line for line in output.splitlines()) == 1, output
    assert "AXES: BEGIN" not in output


@pytest.mark.slow
def test_the_demo_says_a_few_lines_shows_progress_and_ends_with_the_address(tmp_path):
    port, log, marker = free_port(), tmp_path / "demo.log", uuid.uuid4().hex
    command = [sys.executable, "manage.py", "demo", "--documents", "5", "--addr", f"127.0.0.1:{port}",
               "--username", "demo", "--password", "demo-pass", "--log", str(log)]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, env=environment(SIDECAR_TEST_MARKER=marker),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if "make db-stop" in line:  # the last line of the address block
                break
        assert httpx.get(f"http://127.0.0.1:{port}/admin/login/", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            rest = process.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:  # never leave its workers to claim other tests' items
            process.kill()
            kill_processes_marked(marker)
            raise
    said = "\n".join(lines)
    assert lines[0].startswith("Database: ") and "Login: demo / demo-pass" in said, said
    assert "Sample documents: 5 (5 new)" in said and f"their logs: {log}" in said
    assert "Embedding" in said and "5/5" in said  # the progress line reached the end
    address = [line for line in lines if line.strip()][-3:]
    assert address[0].strip() == f"Sidecar admin:  http://127.0.0.1:{port}/admin/"
    assert address[1].strip() == "Login:          demo / demo-pass"
    # A few lines, not the workers' and server's logs (tqdm redraws its line with \r, which
    # a pipe read as text splits into lines).
    assert len([line for line in lines if not line.startswith("Embedding")]) < 16, said
    assert "qcluster" in log.read_text().lower() or "cluster" in log.read_text().lower()
    assert "Stopped." in rest and process.returncode == 0
    assert SourceDocument.objects.count() == 5
