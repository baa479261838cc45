"""The admin's Sources page: the list with each source's figures and state, attaching a table
through its form (preview first, writing nothing; every refusal of the services as a form
error), editing a table source, the actions (pause, resume, resync, backfill, detach with its
confirmation), the filter by source on the documents list and the search page, the dashboard's
per-source table, and /readyz's warning for a broken source."""

import re

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.urls import reverse
from django_q.models import OrmQ

from documents.models import BUILTIN_SOURCE_ID, Source, SourceDocument
from documents.providers.tei import TEIEmbeddingProvider
from queue_admin import sources, tasks
from queue_admin.models import QueueItem
from queue_admin.worker import QueueWorker
from tests import state
from tests.helpers import run_sql as run

pytestmark = pytest.mark.django_db

LIST = reverse("admin:documents_source_changelist")
ATTACH = reverse("admin:documents_source_add")
DOCUMENTS = reverse("admin:documents_sourcedocument_changelist")
SEARCH = reverse("admin:search")
TABLE = '"public"."blog_post"'


def table_dump():
    return run("SELECT * FROM public.blog_post ORDER BY id")


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def form_errors(response) -> str:
    form = response.context["form"]
    return " ".join(str(error) for errors in form.errors.values() for error in errors)


@pytest.fixture
def attached(blog_posts):
    """public.blog_post attached as source "blog", its rows copied."""
    return sources.attach_table(
        sources.TableRequest(TABLE, template="{title}\n\n{body}", title_column="title"), name="blog"
    )


def mapping(**overrides):
    data = {"table": TABLE, "name": "blog", "template": "{title}\r\n\r\n{body}", "title_column": "title"}
    data["priority"] = "medium"
    data.update(overrides)
    return data


def staff_with(*codenames):
    user = User.objects.create_user("source-staff", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="documents", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


# --- The list -----------------------------------------------------------------------------------


def test_the_list_shows_each_source_with_its_figures(admin_client, attached):
    SourceDocument.objects.create(title="Own", content="Sidecar's own document.")
    response = admin_client.get(LIST)
    assert response.status_code == 200
    rows = {source.name: source for source in response.context["cl"].result_list}
    assert set(rows) == {"documents", "blog"}
    blog = rows["blog"].figures
    assert (blog.target, blog.state, blog.rows, blog.queued, blog.missing) == (
        "public.blog_post",
        "active",
        3,
        3,
        3,
    )
    assert rows["documents"].figures.rows == 1
    page = text(response)
    assert "<code>public.blog_post</code>" in page and "Sidecar&#x27;s own documents" in page
    assert f'href="{DOCUMENTS}?source={attached.pk}">3</a>' in page
    assert 'id="attach-table-link"' in page and "Pause selected sources" in page


def test_a_source_being_attached_shows_its_progress(admin_client, attached):
    Source.objects.filter(pk=attached.pk).update(state=Source.State.ATTACHING, rows_total=200, rows_done=50)
    page = text(admin_client.get(LIST))
    assert '<progress max="100" value="25"></progress> 25%' in page and "50 of 200 rows copied" in page
    Source.objects.filter(pk=attached.pk).update(rows_total=None, rows_done=0)
    assert "waiting for a worker to copy the rows" in text(admin_client.get(LIST))


def test_a_table_changed_under_its_source_shows_as_broken_with_the_reason(admin_client, attached):
    run("ALTER TABLE public.blog_post DROP COLUMN body")
    page = text(admin_client.get(LIST))  # the page looks at the tables (sources.check_tables)
    assert Source.objects.get(pk=attached.pk).state == Source.State.BROKEN
    assert '<span class="sidecar-source-state broken">broken</span>' in page
    assert "Column(s) body of public.blog_post no longer exist" in page


# --- Attaching a table --------------------------------------------------------------------------


def test_choosing_a_table_shows_its_columns_and_types(admin_client, blog_posts):
    page = admin_client.get(ATTACH)
    assert ("public.blog_post" in dict(page.context["table_choices"]).values()) and page.context[
        "form"
    ] is None
    response = admin_client.get(ATTACH, {"table": TABLE})
    columns = {column.name: column.type for column in response.context["table"].columns.values()}
    assert columns["id"] == "bigint" and columns["body"] == "text" and columns["cover"] == "bytea"
    page = text(response)
    assert "primary key" in page and "cannot be embedded: binary data (bytea)" in page
    assert response.context["form"]["name"].initial == "blog_post"
    # Binary data is offered as metadata, not as the title.
    assert "cover" not in dict(response.context["form"].fields["title_column"].choices)
    assert "Only a superuser may set a row filter" not in page  # the admin here is one


def test_preview_renders_rows_and_the_estimate_and_writes_nothing(admin_client, blog_posts, settings):
    before = state.fingerprint()
    response = admin_client.post(ATTACH, mapping(where="published", metadata_columns=["lang"], _preview="1"))
    assert response.status_code == 200, form_errors(response)
    assert state.changed_tables(before, state.fingerprint()) == []
    rows = response.context["preview"]["rows"]
    assert [row["key"] for row in rows] == ["1", "3"]
    assert rows[0] == {
        "key": "1",
        "title": "Proxies",
        "content": "Proxies\n\nSet HTTPS_PROXY before you start.",  # the textarea's CRLF made LF
        "metadata": {"lang": "en"},
        "metadata_text": '{"lang": "en"}',
    }
    figures = response.context["preview"]["figures"]
    assert figures.selection.documents == 2 and figures.selection.estimated_tokens > 0
    page = text(response)
    assert "2 rows of the table would become documents" in page
    assert "nothing was embedded in the last 15 minutes" in page and "no price is set" in page

    settings.EMBEDDING_PRICE_PER_MILLION_TOKENS = 0.02
    response = admin_client.post(ATTACH, mapping(_preview="1"))
    assert "Estimated cost:" in text(response) and "at 0.02 per million tokens" in text(response)
    assert not Source.objects.filter(name="blog").exists()


def test_attach_creates_the_source_and_a_worker_task_copies_the_rows(admin_client, admin_user, blog_posts):
    response = admin_client.post(ATTACH, mapping(priority="high", metadata_columns=["lang"], _attach="1"))
    assert response.status_code == 302 and response["Location"] == LIST
    source = Source.objects.get(name="blog")
    assert (source.state, source.default_priority, source.created_by) == ("attaching", "high", admin_user)
    assert source.options["template"] == "{title}\n\n{body}"
    assert OrmQ.objects.count() == 1  # the copy, in the background
    page = text(admin_client.get(LIST))
    assert "Attached public.blog_post as source blog" in page and "waiting for a worker" in page

    tasks.copy_source_rows(source.pk, False)
    documents = SourceDocument.objects.filter(source=source)
    assert sorted(documents.values_list("source_key", flat=True)) == ["1", "2", "3"]
    assert set(QueueItem.objects.filter(document__source=source).values_list("priority", flat=True)) == {
        "high"
    }
    assert Source.objects.get(pk=source.pk).state == Source.State.ACTIVE
    assert table_dump() == blog_posts


@pytest.mark.parametrize(
    "overrides, field, message",
    [
        ({"template": "{title} {summary}"}, None, "The template names a column 'summary'"),
        ({"template": "{title"}, None, "template"),
        ({"where": "no_such_column > 1"}, None, "The row filter is not a boolean expression"),
        ({"where": "title"}, None, "The row filter is not a boolean expression"),
        ({"name": "Blog Posts!"}, "name", "A source name is 1 to 100 lowercase letters"),
        ({"name": "documents"}, "name", "There is already a source named 'documents'"),
        ({"template": ""}, "template", "This field is required"),
    ],
)
def test_what_the_services_refuse_shows_on_the_form_and_nothing_is_written(
    admin_client, blog_posts, overrides, field, message
):
    before = state.fingerprint()
    for button in ("_preview", "_attach"):
        response = admin_client.post(ATTACH, mapping(**overrides, **{button: "1"}))
        assert response.status_code == 200
        errors = response.context["form"].errors
        assert message in " ".join(errors.get(field or "__all__", [])), errors
    assert state.changed_tables(before, state.fingerprint()) == []


def test_a_table_without_a_primary_key_cannot_be_attached(admin_client):
    run("CREATE TABLE public.notes (body text); INSERT INTO public.notes VALUES ('a note')")
    page = text(admin_client.get(ATTACH, {"table": '"public"."notes"'}))
    assert "has no primary key" in page
    response = admin_client.post(
        ATTACH, mapping(table='"public"."notes"', template="{body}", title_column="", _attach="1")
    )
    assert "has no primary key, so Sidecar cannot tell its rows apart" in form_errors(response)
    assert not Source.objects.filter(name="blog").exists()


def test_a_table_that_is_not_there_says_so(admin_client):
    response = admin_client.get(ATTACH, {"table": "public.nowhere"})
    assert "There is no table public.nowhere" in text(response) and response.context["form"] is None


def test_only_a_superuser_may_set_a_row_filter(blog_posts):
    client = staff_with("add_source", "view_source")
    page = text(client.get(ATTACH, {"table": TABLE}))
    assert re.search(r'<textarea name="where"[^>]*disabled', page)
    assert "Only a superuser may set a row filter" in page
    # Posted anyway (the field is disabled in the browser): the service refuses, on the form.
    before = state.fingerprint()
    response = client.post(ATTACH, mapping(where="published", _attach="1"))
    assert "Only a superuser may set a row filter" in " ".join(response.context["form"].errors["where"])
    assert state.changed_tables(before, state.fingerprint()) == []
    # Without a filter the same person attaches the table.
    assert client.post(ATTACH, mapping(_attach="1")).status_code == 302
    assert Source.objects.get(name="blog").options["where"] == ""


def test_attaching_needs_the_add_permission(blog_posts):
    client = staff_with("view_source", "change_source")
    assert client.get(ATTACH).status_code == 403
    assert client.post(ATTACH, mapping(_attach="1")).status_code == 403
    assert not Source.objects.filter(name="blog").exists()


# --- Editing a table source ---------------------------------------------------------------------


def test_editing_the_template_re_renders_in_the_background(admin_client, attached):
    url = reverse("admin:documents_source_change", args=[attached.pk])
    page = admin_client.get(url)
    assert page.context["form"]["template"].value() == "{title}\n\n{body}"
    preview = admin_client.post(url, {"table": TABLE, "template": "{title}: {body}", "title_column": "title",
                                      "priority": "medium", "_preview": "1"})  # fmt: skip
    assert preview.context["preview"]["rows"][0]["content"] == "Proxies: Set HTTPS_PROXY before you start."
    assert Source.objects.get(pk=attached.pk).options["template"] == "{title}\n\n{body}"

    response = admin_client.post(url, {"table": TABLE, "template": "{title}: {body}", "title_column": "title",
                                       "priority": "low", "_save": "1"})  # fmt: skip
    assert response.status_code == 302
    source = Source.objects.get(pk=attached.pk)
    assert (source.options["template"], source.default_priority, source.state) == (
        "{title}: {body}",
        "low",
        "attaching",
    )
    tasks.copy_source_rows(source.pk, True)
    assert SourceDocument.objects.get(source=source, source_key="1").content == (
        "Proxies: Set HTTPS_PROXY before you start."
    )


def test_an_edit_the_service_refuses_changes_nothing(admin_client, attached):
    url = reverse("admin:documents_source_change", args=[attached.pk])
    before = state.fingerprint()
    response = admin_client.post(url, {"table": TABLE, "template": "{summary}", "title_column": "title",
                                       "priority": "low", "_save": "1"})  # fmt: skip
    assert "names a column 'summary'" in form_errors(response)
    assert state.changed_tables(before, state.fingerprint()) == []  # the priority too


def test_a_non_superuser_edits_the_template_and_keeps_the_filter(blog_posts):
    source = sources.attach_table(
        sources.TableRequest(TABLE, template="{title}", where="published"), name="blog"
    )
    client = staff_with("view_source", "change_source")
    url = reverse("admin:documents_source_change", args=[source.pk])
    assert "published" in text(client.get(url))  # shown, disabled
    # The browser does not post a disabled field.
    response = client.post(
        url, {"table": TABLE, "template": "{title} {body}", "priority": "medium", "_save": "1"}
    )
    assert response.status_code == 302
    assert Source.objects.get(pk=source.pk).options["where"] == "published"
    response = client.post(url, {"table": TABLE, "template": "{title}", "priority": "medium", "where": "true",
                                 "_save": "1"})  # fmt: skip
    assert "Only a superuser may change a row filter" in " ".join(response.context["form"].errors["where"])


def test_the_built_in_source_is_read_only_and_cannot_be_detached(admin_client):
    url = reverse("admin:documents_source_change", args=[BUILTIN_SOURCE_ID])
    page = text(admin_client.get(url))
    assert "This source cannot be edited or detached" in page and 'value="Save"' not in page
    assert (
        admin_client.get(reverse("admin:documents_source_delete", args=[BUILTIN_SOURCE_ID])).status_code
        == 403
    )
    response = admin_client.post(
        LIST, {"action": "detach_sources", "_selected_action": [BUILTIN_SOURCE_ID], "index": "0"}
    )
    assert "it cannot be detached" in text(response)
    response = admin_client.post(LIST, {"action": "detach_sources", "_selected_action": [BUILTIN_SOURCE_ID],
                                        "confirm_detach": "yes"}, follow=True)  # fmt: skip
    assert "Not detached: documents is Sidecar&#x27;s own documents" in text(response)
    assert Source.objects.filter(pk=BUILTIN_SOURCE_ID).exists()


# --- The actions --------------------------------------------------------------------------------


def act(client, action, source, **extra):
    return client.post(
        LIST, {"action": action, "_selected_action": [source.pk], "index": "0", **extra}, follow=True
    )


def test_pause_takes_pending_work_off_the_queue_and_resume_queues_what_was_missed(admin_client, attached):
    page = text(act(admin_client, "pause_sources", attached))
    assert "Paused blog: 3 queued items taken off the queue" in page
    assert not Source.objects.get(pk=attached.pk).enabled
    assert not QueueItem.objects.filter(document__source=attached).exists()
    run("UPDATE public.blog_post SET body = 'New text' WHERE id = 1")
    assert not QueueItem.objects.filter(document__source=attached).exists()  # paused: nothing queued
    assert "paused" in text(admin_client.get(LIST))

    assert "Nothing of blog was queued: it is paused" in text(act(admin_client, "backfill_sources", attached))
    page = text(act(admin_client, "resume_sources", attached))
    assert "Resumed blog: 3 documents it missed queued at medium priority" in page
    assert QueueItem.objects.filter(document__source=attached, status="pending").count() == 3


def test_backfill_queues_the_source_s_missing_and_stale_documents(admin_client, attached):
    QueueItem.objects.filter(document__source=attached).delete()
    own = SourceDocument.objects.create(title="Own", content="Not of the blog.")
    QueueItem.objects.filter(document=own).delete()
    page = text(act(admin_client, "backfill_sources", attached))
    assert "Backfill of blog: 3 documents queued at medium priority" in page
    assert QueueItem.objects.filter(document__source=attached).count() == 3
    assert not QueueItem.objects.filter(document=own).exists()


def test_resync_schedules_the_re_render_and_says_why_it_cannot_for_the_built_in_source(
    admin_client, attached
):
    OrmQ.objects.all().delete()
    page = text(act(admin_client, "resync_sources", attached))
    assert "Resyncing blog: a worker re-renders every row in the background" in page
    assert OrmQ.objects.count() == 1 and Source.objects.get(pk=attached.pk).state == Source.State.ATTACHING
    builtin = Source.objects.get(pk=BUILTIN_SOURCE_ID)
    assert "Could not resync documents" in text(act(admin_client, "resync_sources", builtin))


def test_detach_confirms_with_the_counts_then_removes_the_documents_and_leaves_the_table(
    admin_client, attached
):
    document = SourceDocument.objects.get(source=attached, source_key="1")
    run(
        "INSERT INTO document_embeddings (document_id, chunk_index, source_text, source_text_hash, "
        "document_text_hash, embedding, model, token_count, created_at, updated_at) "
        "VALUES (%s, 0, 'x', 'h', 'h', array_fill(0.1, ARRAY[384])::vector, 'm', 1, now(), now())",
        [str(document.pk)],
    )
    QueueItem.objects.filter(document=document).update(status="processing", worker_id="host:1:drain:x")
    dumped = table_dump()

    response = act(admin_client, "detach_sources", attached)
    counts = {row["source"].name: row["counts"] for row in response.context["rows"]}
    assert counts["blog"] == sources.DetachCounts(documents=3, embeddings=1, live_items=3, held_by_workers=1)
    page = text(response)
    assert "The table itself is left exactly as it was" in page
    assert '<td class="sidecar-number" data-count="held">1</td>' in page
    assert Source.objects.filter(pk=attached.pk).exists()  # nothing happens before the confirmation

    # The same confirmation from the source's own page ("Delete" there).
    single = admin_client.get(reverse("admin:documents_source_delete", args=[attached.pk]))
    assert single.context["rows"][0]["counts"] == counts["blog"]

    response = admin_client.post(
        LIST,
        {"action": "detach_sources", "_selected_action": [attached.pk], "confirm_detach": "yes"},
        follow=True,
    )
    assert "Detached blog: 3 documents removed" in text(response)
    assert "The table public.blog_post is as it was" in text(response)
    assert not Source.objects.filter(pk=attached.pk).exists()
    assert not SourceDocument.objects.filter(source_id=attached.pk).exists()
    assert table_dump() == dumped
    assert run(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.blog_post'::regclass AND NOT tgisinternal"
    ) == [(0,)]


def test_who_may_do_what(attached):
    viewer = staff_with("view_source")
    assert viewer.get(LIST).status_code == 200
    assert not re.search(r'<option value="\w+_sources"', viewer.get(LIST).content.decode())
    assert viewer.get(reverse("admin:documents_source_delete", args=[attached.pk])).status_code == 403
    page = text(viewer.get(reverse("admin:documents_source_change", args=[attached.pk])))
    assert "{title}" in page and 'value="Save"' not in page  # read-only
    act(viewer, "pause_sources", attached)
    assert Source.objects.get(pk=attached.pk).enabled

    operator = Client()
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Queue operators"))
    operator.force_login(user)
    options = operator.get(LIST).content.decode()
    assert 'value="pause_sources"' in options and 'value="detach_sources"' not in options
    assert operator.get(ATTACH).status_code == 403
    act(operator, "detach_sources", attached, confirm_detach="yes")
    assert Source.objects.filter(pk=attached.pk).exists()


# --- Sources elsewhere: the documents list, search, the dashboard, /readyz --------------------


def test_the_documents_list_filters_by_source(admin_client, attached):
    own = SourceDocument.objects.create(title="Own", content="Sidecar's own document.")
    response = admin_client.get(DOCUMENTS, {"source": attached.pk})
    assert sorted(doc.source_key for doc in response.context["cl"].result_list) == ["1", "2", "3"]
    response = admin_client.get(DOCUMENTS, {"source": BUILTIN_SOURCE_ID})
    assert [doc.pk for doc in response.context["cl"].result_list] == [own.pk]
    page = text(admin_client.get(DOCUMENTS))
    assert "By source" in page and f'?source={attached.pk}"' in page
    assert list(admin_client.get(DOCUMENTS, {"source": "x"}).context["cl"].result_list) == []


def test_the_documents_list_has_no_source_filter_with_only_sidecar_s_documents(admin_client):
    assert "By source" not in text(admin_client.get(DOCUMENTS))


def test_the_dashboard_lists_the_sources_broken_ones_with_the_reason(admin_client, attached):
    run("ALTER TABLE public.blog_post DROP COLUMN body")
    sources.check_tables()
    page = text(admin_client.get("/admin/"))
    assert 'id="sources"' in page
    assert '<tr data-source="blog" class="sidecar-source-broken">' in page
    assert "Column(s) body of public.blog_post no longer exist" in page


def test_the_dashboard_has_no_sources_table_with_only_sidecar_s_documents(admin_client):
    assert 'id="sources"' not in text(admin_client.get("/admin/"))


def test_readyz_warns_of_a_broken_source_with_its_name_and_reason(client, attached, seeded_config):
    body = client.get("/readyz").json()
    assert body["components"]["sources"] == {"status": "ok", "detail": "no source broken"}
    run("ALTER TABLE public.blog_post DROP COLUMN body")
    sources.check_tables()
    response = client.get("/readyz")
    assert response.status_code == 200  # a warning, not a failure
    component = response.json()["components"]["sources"]
    assert component["status"] == "warn"
    assert component["detail"].startswith("source blog is broken: Column(s) body of public.blog_post")
    assert client.get("/readyz", {"strict": "1"}).status_code == 503


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_config", "fresh_search_caches", "blog_posts")
def test_the_search_page_searches_one_source_and_names_each_hit_s_source_and_key(
    admin_client, tei_search_service
):
    text_of_row_1 = "Proxies\n\nSet HTTPS_PROXY before you start."
    own = SourceDocument.objects.create(title="Own copy", content=text_of_row_1)
    sources.attach_table(
        sources.TableRequest(TABLE, template="{title}\n\n{body}", title_column="title"), name="blog"
    )
    with QueueWorker(TEIEmbeddingProvider(tei_search_service.url, "fake-model", 384), name="test") as worker:
        worker.run()

    page = text(admin_client.get(SEARCH))
    assert '<select name="source" id="id_source">' in page and '<option value="blog">blog</option>' in page

    # The fake's vectors are a hash of the text: the same text is the closest.
    response = admin_client.post(SEARCH, {"q": text_of_row_1, "k": "5", "source": "blog"})
    hits = [row["hit"] for row in response.context["hits"]]
    assert {hit.source for hit in hits} == {"blog"} and (hits[0].source_key, hits[0].title) == (
        "1",
        "Proxies",
    )
    page = text(response)
    assert "among the documents of source <strong>blog</strong>" in page
    assert '<td class="source" data-source="blog">blog <code class="sidecar-key">1</code></td>' in page

    response = admin_client.post(SEARCH, {"q": text_of_row_1, "k": "5"})
    found = {(row["hit"].source, row["hit"].source_key) for row in response.context["hits"]}
    assert {("documents", str(own.pk)), ("blog", "1")} <= found

    response = admin_client.get(SEARCH, {"q": "proxies", "source": "nope"})
    assert "There is no source named nope" in text(response) and "hits" not in response.context
