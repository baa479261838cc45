"""A table renamed, altered or dropped while attached: the application's writes still succeed,
the source is marked broken with the reason, the other sources keep running."""

import pytest

from documents.models import Source, SourceDocument
from queue_admin import sources
from tests.helpers import run_sql as run

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_sources():
    run("""CREATE TABLE public.article (id int PRIMARY KEY, headline text, body text);
           CREATE TABLE public.ticket (id int PRIMARY KEY, subject text);
           INSERT INTO public.article VALUES (1, 'Hello', 'World');
           INSERT INTO public.ticket VALUES (1, 'Printer on fire')""")
    article = sources.attach_table(
        sources.TableRequest("public.article", "{headline}: {body}", title_column="headline"), name="articles"
    )
    ticket = sources.attach_table(sources.TableRequest("public.ticket", "{subject}"), name="tickets")
    return article, ticket


def state(source):
    source.refresh_from_db()
    return source.state, source.state_reason


def test_a_dropped_template_column_breaks_the_source_not_the_write(two_sources):
    article, ticket = two_sources
    run("ALTER TABLE public.article DROP COLUMN body")
    assert run("INSERT INTO public.article VALUES (2, 'Still works') RETURNING id") == [(2,)]
    status, reason = state(article)
    assert status == "broken" and "could not be mirrored" in reason and "body" in reason
    # the other source is untouched and keeps mirroring
    run("INSERT INTO public.ticket VALUES (2, 'Coffee machine')")
    assert state(ticket)[0] == "active"
    assert SourceDocument.objects.filter(source=ticket).count() == 2
    assert [s.name for s in sources.check_tables()] == ["articles"]


def test_the_periodic_check_notices_a_dropped_column_before_any_write(two_sources):
    article, _ = two_sources
    run("ALTER TABLE public.article DROP COLUMN body")
    assert [s.name for s in sources.check_tables()] == ["articles"]
    assert "Column(s) body of public.article no longer exist" in state(article)[1]


def test_a_renamed_table_is_noticed_and_resync_follows_it(two_sources):
    article, _ = two_sources
    run("ALTER TABLE public.article RENAME TO story")
    run("INSERT INTO public.story VALUES (3, 'Renamed', 'but mirrored')")  # the triggers moved with it
    assert SourceDocument.objects.get(source=article, source_key="3").content == "Renamed: but mirrored"
    sources.check_tables()
    assert "was renamed to public.story" in state(article)[1]
    sources.resync(Source.objects.get(pk=article.pk))
    article.refresh_from_db()
    assert (article.state, article.options["table"]) == ("active", "story")


def test_a_dropped_table_is_reported_and_detach_still_cleans_up(two_sources):
    article, ticket = two_sources
    run("DROP TABLE public.article")
    sources.check_tables()
    assert "was dropped" in state(article)[1]
    sources.detach(Source.objects.get(pk=article.pk))
    assert SourceDocument.objects.filter(source_id=article.pk).count() == 0
    assert state(ticket)[0] == "active"


def test_disabled_or_removed_triggers_are_reported(two_sources):
    article, ticket = two_sources
    run(f"ALTER TABLE public.article DISABLE TRIGGER sidecar_source_{article.pk}_update")
    run(f"DROP TRIGGER sidecar_source_{ticket.pk}_delete ON public.ticket")
    sources.check_tables()
    assert "are disabled" in state(article)[1]
    assert "delete trigger(s) on public.ticket were removed" in state(ticket)[1]
    sources.resync(Source.objects.get(pk=ticket.pk))
    assert state(ticket) == ("active", "")
    run("DELETE FROM public.ticket")
    assert SourceDocument.objects.filter(source=ticket).count() == 0


def test_a_null_and_an_over_long_title_never_fail_the_write(two_sources):
    article, _ = two_sources
    run("INSERT INTO public.article VALUES (4, NULL, NULL)")
    run("INSERT INTO public.article VALUES (5, %s, 'x')", ["T" * 5000])
    assert SourceDocument.objects.get(source=article, source_key="4").content == ": "
    assert len(SourceDocument.objects.get(source=article, source_key="5").title) == 500
    assert state(article)[0] == "active"


def test_pause_keeps_documents_in_step_and_queues_nothing_until_resumed(two_sources):
    from queue_admin.models import QueueItem

    article, _ = two_sources
    assert sources.pause(article) == 1  # its pending item is taken off the queue
    run("INSERT INTO public.article VALUES (6, 'While', 'paused')")
    assert SourceDocument.objects.filter(source=article).count() == 2
    assert not QueueItem.objects.filter(document__source=article).exists()
    assert sources.resume(article, "any-model") == 2
    assert QueueItem.objects.filter(document__source=article, status="pending").count() == 2
