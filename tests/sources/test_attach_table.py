"""Attaching a table of the host application: its rows become documents and stay in step,
whoever writes the table, and the table itself is never written."""

import pytest
from django.core.management import call_command
from django.db import connection

from documents.models import Source, SourceDocument
from queue_admin import sources
from queue_admin.models import QueueItem
from tests.helpers import run_sql as run

pytestmark = pytest.mark.django_db

BLOG = """
CREATE TABLE public.blog_post (
  id bigserial PRIMARY KEY, title text NOT NULL, body text, published boolean NOT NULL DEFAULT true,
  views integer NOT NULL DEFAULT 0, lang text DEFAULT 'en', created timestamptz DEFAULT now());
INSERT INTO public.blog_post (title, body, published) VALUES
  ('Proxies', 'Set HTTPS_PROXY before you start.', true),
  ('Draft', 'Not ready yet.', false),
  ('Backups', NULL, true);
"""


def table_dump():
    return run("SELECT * FROM public.blog_post ORDER BY id")


@pytest.fixture
def blog():
    run(BLOG)
    return table_dump()


def attach(**overrides):
    request = dict(table="public.blog_post", template="{title}\n\n{body}", title_column="title")
    request.update(
        {
            k: v
            for k, v in overrides.items()
            if k in ("table", "template", "title_column", "metadata_columns", "where")
        }
    )
    options = {k: v for k, v in overrides.items() if k in ("name", "priority", "user")}
    options.setdefault("name", "blog")
    return sources.attach_table(sources.TableRequest(**request), **options)


def documents_of(source):
    return {
        d.source_key: (d.title, d.content, d.metadata) for d in SourceDocument.objects.filter(source=source)
    }


def test_existing_rows_become_documents_and_are_queued(blog):
    source = attach(where="published", metadata_columns=("lang", "views"), priority="high")
    assert source.state == Source.State.ACTIVE and source.rows_done == 3
    assert documents_of(source) == {
        "1": ("Proxies", "Proxies\n\nSet HTTPS_PROXY before you start.", {"lang": "en", "views": 0}),
        "3": ("Backups", "Backups\n\n", {"lang": "en", "views": 0}),  # NULL renders as empty
    }
    items = QueueItem.objects.filter(document__source=source)
    assert sorted(items.values_list("priority", flat=True)) == ["high", "high"]
    assert table_dump() == blog


def test_writes_by_any_writer_are_mirrored(blog):
    source = attach()
    run("INSERT INTO public.blog_post (title, body) VALUES ('New', 'Fresh text')")
    run("UPDATE public.blog_post SET body = 'Changed' WHERE id = 1")
    run("DELETE FROM public.blog_post WHERE id = 2")
    with connection.cursor() as cursor:
        with cursor.cursor.copy("COPY public.blog_post (title, body) FROM STDIN") as copy:
            for n in range(100):
                copy.write_row((f"Copied {n}", f"body {n}"))
    docs = documents_of(source)
    assert docs["1"][1] == "Proxies\n\nChanged"
    assert "2" not in docs and docs["4"][1] == "New\n\nFresh text"
    assert len(docs) == 2 + 1 + 100
    run("TRUNCATE public.blog_post")
    assert SourceDocument.objects.filter(source=source).count() == 0


def test_an_update_of_an_unrelated_column_writes_and_queues_nothing(blog):
    source = attach()
    document = SourceDocument.objects.get(source=source, source_key="1")
    items = QueueItem.objects.count()
    run("UPDATE public.blog_post SET views = views + 1")
    assert SourceDocument.objects.get(pk=document.pk).updated_at == document.updated_at
    assert QueueItem.objects.count() == items


def test_a_row_leaving_the_filter_loses_its_document(blog):
    source = attach(where="published")
    run("INSERT INTO public.blog_post (title, body, published) VALUES ('Hidden', 'draft', false)")
    assert set(documents_of(source)) == {"1", "3"}
    run("UPDATE public.blog_post SET published = false WHERE id = 1")
    assert set(documents_of(source)) == {"3"}
    run("UPDATE public.blog_post SET published = true")
    assert set(documents_of(source)) == {"1", "2", "3", "4"}


def test_a_changed_primary_key_moves_the_document(blog):
    source = attach()
    run("UPDATE public.blog_post SET id = 100 WHERE id = 1")
    assert set(documents_of(source)) == {"2", "3", "100"}


def test_editing_the_template_re_renders_and_requeues_only_changed_texts(blog):
    source = attach(template="{title}")
    QueueItem.objects.all().update(status="completed")
    sources.edit_table(
        source, sources.TableRequest("public.blog_post", template="{title}: {body}", title_column="title")
    )
    assert documents_of(source)["1"][1] == "Proxies: Set HTTPS_PROXY before you start."
    assert QueueItem.objects.filter(status="pending").count() == 3
    QueueItem.objects.all().update(status="completed")
    sources.resync(Source.objects.get(pk=source.pk))
    assert QueueItem.objects.filter(status="pending").count() == 0


def test_composite_keys_and_awkward_names(db):
    run('''CREATE SCHEMA "Shop Data";
           CREATE TABLE "Shop Data"."Order Lines" ("Order" int, "línea" text, "Ünit ""Name""" text,
                                                   PRIMARY KEY ("Order", "línea"));
           INSERT INTO "Shop Data"."Order Lines" VALUES (1, 'a', 'Chair'), (1, 'b', 'Desk')''')
    source = attach(table='"Shop Data"."Order Lines"', template='{Ünit "Name"} {{x}} 100%s', title_column="")
    assert documents_of(source) == {
        '[1, "a"]': ("", "Chair {x} 100%s", {}),
        '[1, "b"]': ("", "Desk {x} 100%s", {}),
    }
    run('''UPDATE "Shop Data"."Order Lines" SET "Ünit ""Name""" = 'Table' WHERE "línea" = 'b' ''')
    assert documents_of(source)['[1, "b"]'][1] == "Table {x} 100%s"


def test_detach_removes_everything_and_leaves_the_table(blog):
    source = attach()
    assert sources.detach_counts(source).documents == 3
    sources.detach(source)
    assert not Source.objects.filter(pk=source.pk).exists()
    assert SourceDocument.objects.filter(source_id=source.pk).count() == 0
    assert run(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.blog_post'::regclass AND NOT tgisinternal"
    ) == [(0,)]
    run("INSERT INTO public.blog_post (title, body) VALUES ('After', 'detach')")
    assert table_dump()[:3] == blog


def test_source_command_attach_list_detach(blog, capsys):
    call_command("source", "attach", "public.blog_post", "--name", "blog", "--template", "{title}\\n{body}")
    call_command("source", "list", "--json")
    out = capsys.readouterr().out
    assert '"name": "blog"' in out and '"rows": 3' in out
    run("UPDATE public.blog_post SET body = 'changed' WHERE id = 2")
    call_command("source", "resync", "blog")
    assert "Resynced blog: 3 rows" in capsys.readouterr().out
    call_command("source", "detach", "blog", "--yes")
    assert not Source.objects.filter(name="blog").exists()


def test_backfill_of_one_source(blog, capsys):
    source = attach()
    QueueItem.objects.all().delete()
    SourceDocument.objects.create(title="own", content="Sidecar's own document")
    QueueItem.objects.all().delete()
    call_command("backfill", "--source", "blog", "--parallel", "1")
    assert "3 documents to embed" in capsys.readouterr().out
    assert set(QueueItem.objects.values_list("document__source", flat=True)) == {source.pk}


def test_a_long_copy_goes_on_where_it_stopped(blog, monkeypatch):
    """A copy task keeps within its time: it stops after a batch past its budget, keeps its
    place, and queues a successor that goes on from there."""
    from documents.sources import tables
    from queue_admin import tasks

    monkeypatch.setattr(tables, "COPY_BATCH_ROWS", 2)
    monkeypatch.setattr(tasks, "COPY_TASK_SECONDS", 0)  # every batch overruns: one batch per task
    successors = []
    monkeypatch.setattr(sources, "schedule_copy", lambda source, update=False: successors.append(source.pk))
    run(
        "INSERT INTO public.blog_post (title, body) SELECT 'Post ' || n, 'Body ' || n FROM generate_series(4, 9) n"
    )
    source = sources.attach_table(
        sources.TableRequest("public.blog_post", "{title}: {body}"), name="blog", copy_now=False
    )
    assert successors == [source.pk]  # attaching queued the first task
    while successors:
        successors.pop()
        done = tasks.copy_source_rows(source.pk, False)
        position = Source.objects.get(pk=source.pk)
        assert done == (not successors)
        if not done:
            assert position.state == "attaching" and position.copy_position["after"] == [
                str(position.rows_done)
            ]
    source.refresh_from_db()
    assert (source.state, source.rows_done, source.copy_position) == ("active", 9, None)
    assert len(documents_of(source)) == 9


def test_detaching_a_large_source_leaves_its_documents_to_a_worker_task(blog, monkeypatch):
    import django_q.tasks

    from queue_admin import tasks

    queued = []
    monkeypatch.setattr(
        django_q.tasks, "async_task", lambda name, *args, **kwargs: queued.append((name, args))
    )
    source = attach()
    assert sources.detach(source, now=False) == 0
    source.refresh_from_db()
    assert source.state == "detaching" and queued == [("queue_admin.tasks.finish_detach", (source.pk,))]
    run("INSERT INTO public.blog_post (title, body) VALUES ('After', 'the triggers went')")
    assert SourceDocument.objects.filter(source=source).count() == 3  # not mirrored any more
    assert tasks.finish_detach(source.pk) == 3
    assert not Source.objects.filter(pk=source.pk).exists()
