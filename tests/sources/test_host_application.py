"""An application writing its own tables while Sidecar's workers run: every write succeeds,
the documents end in step with the rows and embedded, and the table holds exactly what the
application wrote. Real worker processes with the fake embedder (this is about the mirror and
the queue, not the model)."""

import os
import random
import subprocess
import sys
import time

import psycopg
import pytest

from documents.models import DocumentEmbedding, Source, SourceDocument
from queue_admin import sources
from queue_admin.models import QueueItem
from tests.fakes import FakeEmbedderForQueueTests
from tests.helpers import ROOT, database_url, drop_host_tables, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]

SCHEMA = """
CREATE TABLE public.blog_author (id serial PRIMARY KEY, name varchar(100) NOT NULL);
CREATE TABLE public.blog_post (
  id bigserial PRIMARY KEY, author_id int REFERENCES public.blog_author (id),
  title varchar(200) NOT NULL, body text NOT NULL, status varchar(10) NOT NULL DEFAULT 'draft',
  views int NOT NULL DEFAULT 0, updated timestamptz NOT NULL DEFAULT now());
INSERT INTO public.blog_author (name) VALUES ('Ada'), ('Grace');
"""


def host():
    """The application's own connection: autocommit, its default search_path."""
    return psycopg.connect(database_url(), autocommit=True)


def start_worker(log, *args):
    env = dict(os.environ, DATABASE_URL=database_url(), DEBUG="1")
    return subprocess.Popen(
        [sys.executable, "-m", "tests.worker_process", "--log", str(log), *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def host_tables_dropped():
    """A transactional test's flush empties Django's tables only; the application's go here."""
    yield
    drop_host_tables("public.blog_post", "public.blog_author")


def expected_documents(conn):
    rows = conn.execute(
        "SELECT id::text, title, title || E'\\n\\n' || body FROM public.blog_post WHERE status = 'published'"
    ).fetchall()
    return {key: (title, content) for key, title, content in rows}


def test_writes_of_every_kind_while_workers_run_end_in_step(tmp_path):
    with host() as conn:
        conn.execute(SCHEMA)
        with conn.cursor().copy("COPY public.blog_post (author_id, title, body, status) FROM STDIN") as copy:
            for n in range(300):
                copy.write_row(
                    (1 + n % 2, f"Post {n}", f"Body of post {n} about topic {n % 7}.", "published")
                )
    source = sources.attach_table(
        sources.TableRequest(
            "public.blog_post", "{title}\n\n{body}", title_column="title", where="status = 'published'"
        ),
        name="blog",
    )
    assert source.rows_done == 300
    log = tmp_path / "sent.txt"
    workers = [start_worker(log, "--seconds", "25") for _ in range(2)]
    rng = random.Random(7)
    with host() as conn:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            post = rng.randint(1, 300)
            choice = rng.random()
            if choice < 0.3:  # the ORM's UPDATE of a model: every column, one row
                conn.execute(
                    "UPDATE public.blog_post SET author_id = %s, title = %s, body = %s, status = %s, views = %s, "
                    "updated = now() WHERE id = %s",
                    [1, f"Post {post} (edited)", f"Edited body {rng.random()}", "published", 1, post],
                )
            elif choice < 0.55:  # a counter: no document change
                conn.execute("UPDATE public.blog_post SET views = views + 1 WHERE id = %s", [post])
            elif choice < 0.7:  # the ORM's INSERT ... RETURNING
                conn.execute(
                    "INSERT INTO public.blog_post (author_id, title, body, status) VALUES (%s, %s, %s, %s) RETURNING id",
                    [2, "New post", f"Fresh text {rng.random()}", rng.choice(["draft", "published"])],
                ).fetchone()
            elif choice < 0.8:  # unpublish / publish
                conn.execute(
                    "UPDATE public.blog_post SET status = %s WHERE id = %s",
                    [rng.choice(["draft", "published"]), post],
                )
            elif choice < 0.9:
                conn.execute("DELETE FROM public.blog_post WHERE id = %s", [post])
            elif choice < 0.95:  # psql: one statement over many rows
                conn.execute(
                    "UPDATE public.blog_post SET body = body || ' (tagged)' WHERE id %% 13 = %s", [post % 13]
                )
            else:  # a bulk load
                with conn.cursor().copy(
                    "COPY public.blog_post (author_id, title, body, status) FROM STDIN"
                ) as copy:
                    for n in range(50):
                        copy.write_row((1, f"Imported {n}", f"Imported text {rng.random()}", "published"))
        for worker in workers:
            _, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
        finisher = start_worker(log, "--until-empty")
        _, err = finisher.communicate(timeout=120)
        assert finisher.returncode == 0, err

        mirrored = {d.source_key: (d.title, d.content) for d in SourceDocument.objects.filter(source=source)}
        assert mirrored == expected_documents(conn)
        source.refresh_from_db()
        assert source.state == Source.State.ACTIVE, source.state_reason
    model = FakeEmbedderForQueueTests.model_id
    for document in SourceDocument.objects.filter(source=source):
        chunk = DocumentEmbedding.objects.get(document=document, model=model, chunk_index=0)
        items = list(
            QueueItem.objects.filter(document=document)
            .order_by("created_at")
            .values_list("status", "updated_at")
        )
        assert chunk.document_text_hash == document.content_hash, (
            document.source_key,
            chunk.updated_at,
            items,
        )
    assert not QueueItem.objects.filter(status="failed").exists()


def test_detaching_while_workers_hold_its_items(tmp_path):
    with host() as conn:
        conn.execute(SCHEMA)
        with conn.cursor().copy("COPY public.blog_post (author_id, title, body, status) FROM STDIN") as copy:
            for n in range(40):
                copy.write_row((1, f"Post {n}", f"Body {n}", "published"))
        before = conn.execute("SELECT * FROM public.blog_post ORDER BY id").fetchall()
    source = sources.attach_table(sources.TableRequest("public.blog_post", "{body}"), name="blog")
    other = SourceDocument.objects.create(title="Own", content="Sidecar's own document")
    log = tmp_path / "sent.txt"
    worker = start_worker(log, "--slow", "1", "--seconds", "8")
    wait_until(
        lambda: QueueItem.objects.filter(status="processing").exists(), 30, lambda: "no item was claimed"
    )
    counts = sources.detach_counts(source)
    assert counts.held_by_workers > 0 and counts.documents == 40
    sources.detach(source)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert SourceDocument.objects.filter(source_id=source.pk).count() == 0
    assert not DocumentEmbedding.objects.exclude(document=other).exists()
    with host() as conn:
        assert conn.execute("SELECT * FROM public.blog_post ORDER BY id").fetchall() == before
        assert conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.blog_post'::regclass AND NOT tgisinternal"
        ).fetchone() == (0,)


def test_an_over_long_text_is_written_by_the_host_and_dead_lettered_by_the_worker(settings):
    from queue_admin.worker import QueueWorker

    with host() as conn:
        conn.execute(SCHEMA)
    source = sources.attach_table(sources.TableRequest("public.blog_post", "{body}"), name="blog")
    settings.EMBEDDING_MAX_DOCUMENT_CHARACTERS = 1000
    with host() as conn:
        conn.execute("INSERT INTO public.blog_post (title, body) VALUES ('Huge', %s)", ["word " * 1000])
    with QueueWorker(FakeEmbedderForQueueTests(), name="test") as worker:
        worker.run()
    item = QueueItem.objects.get(document__source=source)
    assert item.status == "failed" and "characters" in item.error_message
    source.refresh_from_db()
    assert source.state == Source.State.ACTIVE
