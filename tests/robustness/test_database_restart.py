"""PostgreSQL stopped and started in the middle of a backlog.

Real parts only: a PostgreSQL of this test's own (the embedded launcher, its own data
directory and port), the web process under gunicorn with production settings, a worker
(`process_queue`) embedding through a fake embedding service on loopback. While the database
is down, /readyz says 503 with JSON and the admin a 503 page, never a traceback; once it is
back, both processes carry on by themselves, and every document ends embedded exactly as its
text says — nothing lost, nothing stuck.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from embedding_site import embedded_pg
from tests.fault_server import FakeEmbedder, Fault
from tests.helpers import ROOT, free_port, reachable_tmp_dir, shut_down_every_server_in

pytestmark = pytest.mark.slow

MODEL = "fake-restart-model"
FIRST_BATCH, SECOND_BATCH = 400, 100


@pytest.fixture
def own_database():
    """A migrated PostgreSQL of this test's own: (data_dir, port, url)."""
    folder = reachable_tmp_dir()
    data_dir, port = folder / "postgres", free_port()
    url = embedded_pg.ensure_running(data_dir, port)
    try:
        yield data_dir, port, url
    finally:
        shut_down_every_server_in(folder)


@pytest.fixture
def embedder():
    with FakeEmbedder(dimensions=384) as fake:
        yield fake


def environment(database_url: str, embedder_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "EMBEDDED_DB"))}
    env.update(
        DEBUG="0",
        SECRET_KEY="restart-test-" + "x" * 40,
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="0",
        DATABASE_URL=database_url,
        EMBEDDING_PROVIDER="tei",
        EMBEDDING_MODEL=MODEL,
        EMBEDDING_BASE_URL=embedder_url,
        LOG_FORMAT="json",
    )
    return env


def start(*command, env, log: Path):
    # Output to a file, not a pipe: a pipe nobody reads until the end fills up and blocks the
    # process at its next log line.
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, *command], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    process.log = log
    return process


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = condition()
        except (httpx.HTTPError, psycopg.OperationalError):
            result = None
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def log_in(site: httpx.Client, username: str, password: str) -> None:
    """Log in through the admin's form. Production settings mark the session and CSRF cookies
    Secure, and this server speaks plain HTTP behind an imagined TLS proxy: say so with
    X-Forwarded-Proto, and carry the cookies by hand (a client keeps Secure cookies off HTTP)."""
    site.headers["X-Forwarded-Proto"] = "https"
    login = site.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    cookies = dict(login.cookies)
    answer = site.post(
        "/admin/login/?next=/admin/",
        data={"csrfmiddlewaretoken": token, "username": username, "password": password},
        headers={
            "Referer": f"https://{site.base_url.host}:{site.base_url.port}/admin/login/",
            "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
        },
    )
    assert answer.status_code == 302 and answer.headers["Location"] == "/admin/", answer.text[:500]
    cookies.update(answer.cookies)
    site.headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())


def insert_documents(url: str, start_at: int, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO source_documents (title, content) "
            "SELECT 'doc ' || g, 'document number ' || g || ' about restarting databases' "
            "FROM generate_series(%s::int, %s::int) g",
            [start_at, start_at + n - 1],
        )


def one_row(url: str, query: str):
    with psycopg.connect(url, autocommit=True) as db:
        return db.execute(query).fetchone()


def stop_and_collect(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return process.log.read_text()


# One request in flight (the default), and four: each lane holds at most two
# batches (one at the model, one being written), so that many may be sent again.
@pytest.mark.parametrize("lanes", [1, 4])
def test_web_and_worker_ride_out_a_database_restart_and_nothing_is_lost(
    own_database, embedder, tmp_path, lanes
):
    data_dir, port, url = own_database
    env = {**environment(url, embedder.url), "STATIC_ROOT": str(tmp_path / "static")}
    for command in (
        ["migrate", "--no-input", "-v", "0"],
        ["collectstatic", "--no-input", "-v", "0"],
        ["demo_admin", "--username", "admin", "--password", "restart-test-password"],
    ):
        done = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    with psycopg.connect(url, autocommit=True) as settings_connection:
        settings_connection.execute(
            "INSERT INTO embedding_queue_config (config_key, config_value, description, created_at, updated_at) "
            "VALUES ('requests_in_flight', %s::jsonb, '', now(), now()) "
            "ON CONFLICT (config_key) DO UPDATE SET config_value = excluded.config_value",
            [str(lanes)],
        )

    web_port = free_port()
    web = start("-m", "gunicorn", "embedding_site.wsgi:application", "-b", f"127.0.0.1:{web_port}",
                "-w", "1", "--timeout", "30", env=env, log=tmp_path / "web.log")  # fmt: skip
    worker = start("manage.py", "process_queue", "--seconds", "300", env=env, log=tmp_path / "worker.log")
    site = httpx.Client(base_url=f"http://127.0.0.1:{web_port}", timeout=10)
    try:
        wait_for(lambda: site.get("/healthz").status_code == 200, 30, "the web process")
        log_in(site, "admin", "restart-test-password")
        # A few batches at an easy pace, then one the model takes 3 s over: the database goes
        # away while that batch is at the model, so its results can neither be written nor the
        # batch given back until the database returns.
        embedder.script(*[Fault(sleep=0.2)] * 5, Fault(sleep=3.0))
        insert_documents(url, 1, FIRST_BATCH)
        wait_for(lambda: embedder.count() >= 6, 60, "the slow batch to reach the model")
        assert site.get("/readyz").json()["components"]["database"]["status"] == "ok"
        assert one_row(url, "SELECT count(*) FROM embedding_queue WHERE status = 'processing'")[0] > 0

        # --- the database goes away in the middle of the backlog --------------------------
        assert embedded_pg.stop(data_dir)
        down = site.get("/readyz")
        assert down.status_code == 503 and down.headers["Content-Type"] == "application/json"
        assert down.json()["components"]["database"]["status"] == "fail"
        page = site.get("/admin/")  # a logged-in person: the session lives in the database
        assert page.status_code == 503 and page.headers["Retry-After"] == "30"
        assert "The database is not answering" in page.text and "Traceback" not in page.text
        api = site.get("/api/search?q=x")  # the session cookie makes it ask the database
        assert api.status_code == 503 and api.json() == {
            "error": "The database is not answering; try again in a moment."
        }
        time.sleep(3)  # the worker fails a few claims meanwhile and backs off

        # --- it comes back ----------------------------------------------------------------
        embedded_pg.ensure_running(data_dir, port)
        insert_documents(url, FIRST_BATCH + 1, SECOND_BATCH)
        wait_for(lambda: site.get("/readyz").status_code == 200, 30, "/readyz to recover")
        assert "Embeddings, queue and workers" in site.get("/admin/").text  # still logged in
        total = FIRST_BATCH + SECOND_BATCH
        wait_for(
            lambda: one_row(url, "SELECT count(*) FROM embedding_queue WHERE status = 'completed'")[0] == total,
            120, "every document to be embedded",
        )  # fmt: skip
    finally:
        site.close()
        worker_output = stop_and_collect(worker)
        web_output = stop_and_collect(web)

    # Nothing lost, nothing stuck, nothing stale: one current chunk per document, by the model.
    assert one_row(url, "SELECT count(*) FROM source_documents")[0] == total
    assert (
        one_row(
            url,
            """SELECT count(*) FROM source_documents d JOIN document_embeddings e
                            ON e.document_id = d.id AND e.chunk_index = 0 AND e.model = %s
                           WHERE e.document_text_hash = d.content_hash""".replace("%s", f"'{MODEL}'"),
        )[0]
        == total
    )
    assert one_row(url, "SELECT count(*) FROM embedding_queue WHERE status <> 'completed'")[0] == 0
    # The batch in flight when the database went away may be sent again; no more than that
    # (with one lane; with more, at most the two batches each lane holds).
    sent = sum(len(request.json["inputs"]) for request in embedder.requests)
    assert total <= sent <= total + (32 if lanes == 1 else 2 * 32 * lanes), sent
    assert "Traceback" not in web_output, web_output[-3000:]
    assert worker.returncode == 0, worker_output[-3000:]
    # The batch caught in the outage was given back as soon as the database answered (not
    # left to its lease, which the worker's heartbeat would have kept renewing). With four
    # lanes the slow batch may reach the writer after the database is back, leaving nothing to
    # give back; that none waited out its lease is then shown by everything above completing
    # within the 120 s wait, under the 300 s lease.
    if lanes == 1:
        assert "gave back 32 items of a batch that failed" in worker_output, worker_output[-3000:]
