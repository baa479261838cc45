"""The documents admin: the embedding-status column and filter, "Re-embed selected", the
backfill page and the change page's embedding metadata — on the real PostgreSQL.

Sidecar rows are written directly (as the workers would) so that each state is exact; these
tests are about the admin, not the model."""

import re

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from documents.models import SourceDocument
from documents.providers import factory
from queue_admin.models import QueueItem
from tests.helpers import add_item, make_document

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:documents_sourcedocument_changelist")
BACKFILL = reverse("admin:documents_sourcedocument_backfill")
NO_SELECTION = "Items must be selected in order to perform actions on them. No items have been changed."


@pytest.fixture(autouse=True)
def configured_provider():
    """The default local model's id, without loading the model (statuses are about its rows)."""
    factory.get_provider.cache_clear()
    yield factory.get_provider().model_id
    factory.get_provider.cache_clear()


@pytest.fixture
def every_state():
    """One document per status, plus the cases where the precedence matters."""
    docs = {
        "fresh": make_document("fresh", chunks=2),
        "stale": make_document("stale", chunks=1, text_hash="0" * 32),
        "stale-other-model": make_document("stale-other-model", chunks=1, model="old-model@1"),
        "missing": make_document("missing"),
        "queued": make_document("queued", chunks=1, text_hash="0" * 32),
        "failed": make_document("failed"),
        "failed-then-fresh": make_document("failed-then-fresh", chunks=1),
        "failed-then-completed": make_document("failed-then-completed", chunks=1, text_hash="0" * 32),
        "cancelled": make_document("cancelled", chunks=1, text_hash="0" * 32),
        "empty": make_document("empty", content="   "),
    }
    add_item(docs["queued"], "pending")
    add_item(docs["failed"], "failed", error="400 Bad Request: input too long")
    add_item(docs["failed-then-fresh"], "failed", error="timeout")
    add_item(docs["failed-then-completed"], "failed", minutes_ago=10)
    add_item(docs["failed-then-completed"], "completed")
    add_item(docs["cancelled"], "cancelled")
    return docs


EXPECTED = {
    "fresh": "fresh",
    "stale": "stale",
    "stale-other-model": "stale",
    "missing": "missing",
    "queued": "queued",
    "failed": "failed",
    "failed-then-fresh": "fresh",
    "failed-then-completed": "stale",
    "cancelled": "cancelled",
    "empty": "empty",
}


def listed_titles(response):
    return sorted(str(doc) for doc in response.context["cl"].result_list)


def test_the_status_column_shows_each_state(admin_client, every_state):
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    statuses = {str(doc): doc.embedding_status for doc in response.context["cl"].result_list}
    assert statuses == EXPECTED
    html = response.content.decode()
    for status in set(EXPECTED.values()):
        assert f'class="embedding-status embedding-{status}"' in html


def test_chunk_and_model_columns_count_the_configured_models_rows(
    admin_client, every_state, configured_provider
):
    rows = {str(doc): doc for doc in admin_client.get(CHANGELIST).context["cl"].result_list}
    assert (rows["fresh"].chunk_count, rows["fresh"].embedded_model) == (2, configured_provider)
    assert (rows["stale-other-model"].chunk_count, rows["stale-other-model"].embedded_model) == (
        0,
        "old-model@1",
    )
    assert (rows["missing"].chunk_count, rows["missing"].embedded_model) == (0, None)


@pytest.mark.parametrize("status", ["fresh", "stale", "missing", "queued", "failed", "empty"])
def test_the_status_filter_lists_exactly_the_documents_the_column_shows(admin_client, every_state, status):
    response = admin_client.get(CHANGELIST, {"embedding": status})
    assert response.status_code == 200
    assert listed_titles(response) == sorted(title for title, shown in EXPECTED.items() if shown == status)


def test_an_unknown_status_in_the_url_gives_an_empty_list_not_an_error(admin_client, every_state):
    response = admin_client.get(CHANGELIST, {"embedding": "bogus"})
    assert response.status_code == 200 and listed_titles(response) == []


def test_the_list_makes_the_same_few_queries_for_5_or_60_documents(
    admin_client, django_assert_max_num_queries
):
    for n in range(5):
        make_document(f"doc {n}", chunks=1)
    with CaptureQueriesContext(connection) as small:
        assert admin_client.get(CHANGELIST).status_code == 200
    for n in range(5, 60):
        doc = make_document(f"doc {n}", chunks=n % 3)
        if n % 5 == 0:
            add_item(doc, "failed", error="boom")
    with django_assert_max_num_queries(len(small)):
        response = admin_client.get(CHANGELIST)
    assert len(response.context["cl"].result_list) == 60
    # The statuses, chunk counts and models come with the page's rows: no query per row.
    assert len(small) <= 10
    # No per-status counts of the whole table ("Show counts").
    assert "Show counts" not in response.content.decode()
    with django_assert_max_num_queries(len(small)):
        admin_client.get(CHANGELIST, {"_facets": "1"})


def test_the_list_loads_no_document_text(admin_client):
    make_document("big", content="word " * 50_000)
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(CHANGELIST)
    page_query = next(q["sql"] for q in queries if "embedding_status" in q["sql"])
    select_list = page_query.split(" FROM ", 1)[0]
    assert (
        '"source_documents"."content",' not in select_list
        and '"source_documents"."content" ' not in select_list
    )


def test_past_the_exact_count_the_list_shows_an_estimate_and_says_so(admin_client, monkeypatch):
    from django.contrib import admin

    from embedding_site.counting import EstimatedCountPaginator

    monkeypatch.setattr(EstimatedCountPaginator, "exact_up_to", 3)
    monkeypatch.setattr(admin.site._registry[SourceDocument], "list_per_page", 2)
    SourceDocument.objects.bulk_create(SourceDocument(title=f"d{n}", content=f"text {n}") for n in range(5))
    response = admin_client.get(CHANGELIST)
    html = response.content.decode()
    assert response.context["cl"].paginator.estimated
    shown = response.context["cl"].result_count
    assert shown >= 4  # never less than what the capped count saw
    assert '<span class="sidecar-estimate"' in html and f"≈ {shown:,}</span> source documents" in html
    assert f"Select all ≈ {shown:,} source documents" in html


# "Re-embed selected"


def run_action(client, ids, *, confirm=False, url=CHANGELIST, **extra):
    data = {"action": "reembed_selected", "_selected_action": [str(i) for i in ids], **extra}
    if confirm:
        data["confirm_reembed"] = "yes"
    else:
        data["index"] = "0"
    return client.post(url, data, follow=confirm)


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def test_reembed_confirmation_says_how_many_documents_and_tokens(admin_client, every_state):
    chosen = [every_state["fresh"], every_state["missing"], every_state["empty"]]
    response = run_action(admin_client, [d.pk for d in chosen])
    assert response.status_code == 200
    text = re.sub(r"\s+", " ", response.content.decode())
    tokens = sum(len(d.content) // 4 + 1 for d in chosen[:2])
    assert "Re-embed <strong>2</strong> documents" in text
    assert f"about <strong>{tokens}</strong> tokens" in text
    assert "1 selected document has no text and will be skipped" in text
    assert not QueueItem.objects.filter(document__in=chosen, priority="high").exists()  # nothing yet


def test_confirmed_reembed_queues_high_priority_forced_items(admin_client, every_state):
    chosen = [every_state["fresh"], every_state["queued"], every_state["failed"], every_state["empty"]]
    response = run_action(admin_client, [d.pk for d in chosen], confirm=True)
    assert response.status_code == 200
    assert "Queued 3 documents for re-embedding at high priority, even if unchanged." in messages_of(response)
    assert "Skipped 1 document with no text: nothing to embed." in messages_of(response)
    live = QueueItem.objects.filter(status__in=QueueItem.LIVE_STATUSES, document__in=chosen)
    assert sorted(str(i.document) for i in live) == ["failed", "fresh", "queued"]
    assert {(i.priority, i.metadata.get("force")) for i in live} == {("high", True)}
    # The document that was already queued kept one item, raised, not a second one.
    assert QueueItem.objects.filter(document=every_state["queued"]).count() == 1


def test_documents_deleted_after_the_confirmation_are_reported_as_skipped(admin_client, every_state):
    ids = [every_state[key].pk for key in ("fresh", "missing", "stale")]
    assert run_action(admin_client, ids).status_code == 200
    SourceDocument.objects.filter(pk=every_state["missing"].pk).delete()
    response = run_action(admin_client, ids, confirm=True)
    said = messages_of(response)
    assert [m for m in said if "sidecar-touched" not in m] == [
        "Queued 2 documents for re-embedding at high priority, even if unchanged.",
        "Skipped 1 of the 3 documents you confirmed: deleted since.",
    ]
    # A link to the items it queued, which lists exactly them with their status.
    (link,) = [m for m in said if "sidecar-touched" in m]
    url = re.search(r'href="([^"]+)"', link).group(1).replace("&amp;", "&")
    listed = admin_client.get(url).content.decode()
    assert str(every_state["fresh"].pk) in url and str(every_state["stale"].pk) in url
    assert f"{every_state['fresh'].title}" in listed and f"{every_state['stale'].title}" in listed
    assert every_state["queued"].title not in listed


def test_when_every_confirmed_document_was_deleted_nothing_is_queued(admin_client, every_state):
    chosen = [every_state["fresh"], every_state["missing"]]
    SourceDocument.objects.filter(pk__in=[d.pk for d in chosen]).delete()
    response = run_action(admin_client, [d.pk for d in chosen], confirm=True)
    assert messages_of(response) == ["Skipped 2 of the 2 documents you confirmed: deleted since."]
    assert not QueueItem.objects.filter(priority="high").exists()


def test_no_selection_gets_djangos_message_and_changes_nothing(admin_client, every_state):
    before = list(QueueItem.objects.values_list("id", "status", "priority"))
    response = admin_client.post(CHANGELIST, {"action": "reembed_selected", "index": "0"}, follow=True)
    assert NO_SELECTION in messages_of(response)
    assert list(QueueItem.objects.values_list("id", "status", "priority")) == before


def test_select_all_across_a_filtered_list_reembeds_every_match(admin_client, every_state, monkeypatch):
    from embedding_site.counting import EstimatedCountPaginator

    monkeypatch.setattr(EstimatedCountPaginator, "exact_up_to", 1)  # the list shows an estimate
    url = f"{CHANGELIST}?embedding=stale"
    page_ids = [every_state["stale"].pk]
    confirmation = run_action(admin_client, page_ids, url=url, select_across="1")
    assert "Re-embed <strong>3</strong> documents" in re.sub(r"\s+", " ", confirmation.content.decode())
    response = run_action(
        admin_client, page_ids, url=url, confirm=True, select_across="1", confirmed_documents="3"
    )
    assert "Queued 3 documents for re-embedding at high priority, even if unchanged." in messages_of(response)
    stale = ["stale", "stale-other-model", "failed-then-completed"]
    assert sorted(
        str(i.document) for i in QueueItem.objects.filter(priority="high", status="pending")
    ) == sorted(stale)


def test_a_malformed_selection_is_refused_without_an_error_page(admin_client, every_state):
    response = admin_client.post(
        CHANGELIST,
        {"action": "reembed_selected", "index": "0", "_selected_action": ["not-a-uuid"]},
        follow=True,
    )
    assert response.status_code == 200
    assert any("not valid" in m for m in messages_of(response))


@pytest.fixture
def viewer():
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_sourcedocument"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator_client():
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Queue operators"))
    client = Client()
    client.force_login(user)
    return client


def test_without_the_reembed_permission_there_is_no_action_and_no_backfill(viewer, every_state):
    page = viewer.get(CHANGELIST)
    assert page.status_code == 200
    html = page.content.decode()
    assert "reembed_selected" not in html and BACKFILL not in html
    response = run_action(viewer, [every_state["fresh"].pk], confirm=True)
    assert not QueueItem.objects.filter(priority="high").exists()
    assert viewer.get(BACKFILL).status_code == 403
    assert viewer.post(BACKFILL, {"kind": "missing_or_stale", "priority": "high"}).status_code == 403
    assert response.status_code in (200, 302)


def test_queue_operators_may_reembed_and_backfill(operator_client, every_state):
    html = operator_client.get(CHANGELIST).content.decode()
    assert 'value="reembed_selected"' in html and BACKFILL in html
    run_action(operator_client, [every_state["fresh"].pk], confirm=True)
    assert QueueItem.objects.get(document=every_state["fresh"]).priority == "high"


# The backfill page


def estimate_text(response):
    return re.sub(r"\s+", " ", response.content.decode())


def test_backfill_page_estimates_before_queueing(admin_client, every_state, settings):
    settings.EMBEDDING_PRICE_PER_MILLION_TOKENS = 0
    response = admin_client.get(BACKFILL)
    assert response.status_code == 200
    # missing or stale, with text, not held for a person (failed, cancelled): stale,
    # stale-other-model, missing, queued, failed-then-completed
    wanted = ["stale", "stale-other-model", "missing", "queued", "failed-then-completed"]
    tokens = sum(len(every_state[key].content) // 4 + 1 for key in wanted)
    text = estimate_text(response)
    assert f"<strong>{len(wanted)}</strong> documents, about <strong>{tokens}</strong> tokens" in text
    assert "Left out: <strong>2</strong> documents whose last attempt failed or was cancelled" in text
    # Plain words, the setting's name one click away for engineers.
    assert "nothing was embedded in the last 15 minutes" in text and "no price is set" in text
    assert "<summary>For engineers</summary>Set <code>EMBEDDING_PRICE_PER_MILLION_TOKENS</code>" in text
    assert not QueueItem.objects.filter(priority="low").exists()  # a GET queues nothing


def test_backfill_estimate_shows_time_at_the_recent_rate_and_cost(admin_client, every_state, settings, sql):
    settings.EMBEDDING_PRICE_PER_MILLION_TOKENS = 0.02
    # 10 documents done in the last 20 s of the last 15 minutes: 0.5 documents a second.
    docs = [make_document(f"done {n}", chunks=1) for n in range(10)]
    for doc in docs:
        sql(
            """INSERT INTO embedding_queue (id, document_id, operation, status, priority, retry_count, max_retries,
                   error_kind, error_message, worker_id, estimated_tokens, rate_limit_delay_ms, metadata,
                   processing_started_at, processing_completed_at)
               VALUES (gen_random_uuid(), %s, 'embed', 'completed', 'medium', 0, 3, '', '', '', 1, 0, '{}',
                       now() - interval '30 seconds', now() - interval '10 seconds')""",
            [doc.pk],
        )
    response = admin_client.get(BACKFILL, {"kind": "missing", "priority": "low", "include_failed": "on"})
    text = estimate_text(response)
    # "missing" and "failed" (included) have no chunks of any model; 2 documents at 0.5 a second: 4 s.
    assert "<strong>2</strong> documents, about" in text
    # By tokens: the recent documents ("done N") hold 2 estimated tokens each, so 1 token a second.
    assert "Time: <strong>under a minute</strong>" in text
    recent_tokens = sum(len(doc.content) // 4 + 1 for doc in docs) / len(docs)
    assert f"(0.5 documents a second, {round(0.5 * recent_tokens)} tokens a second)" in text
    assert "Estimated cost: <strong>0.0000</strong> at 0.02 per million tokens" in text


def test_the_estimate_warns_of_documents_too_long_to_embed_and_says_time_in_words(
    admin_client, every_state, settings
):
    settings.EMBEDDING_MAX_DOCUMENT_CHARACTERS = 10  # every selected text is longer than this
    text = estimate_text(
        admin_client.get(BACKFILL, {"kind": "missing", "priority": "low", "include_failed": "on"})
    )
    assert re.search(
        r"<strong>\d+</strong> of them (is|are) longer than the workers embed\s+\(10 characters\)", text
    )
    assert "will fail again" in text and "<code>EMBEDDING_MAX_DOCUMENT_CHARACTERS</code>" in text


@pytest.mark.parametrize(
    "seconds, words",
    [(0.4, "under a minute"), (59, "under a minute"), (61, "about 1 minute"), (720, "about 12 minutes"),
     (3 * 3600, "about 3 hours"), (3 * 86400, "about 3 days")],
)  # fmt: skip
def test_durations_in_words(seconds, words):
    from queue_admin.backfill import duration_in_words

    assert duration_in_words(seconds) == words


def test_backfill_queues_missing_and_stale_at_the_chosen_priority(admin_client, every_state):
    response = admin_client.post(BACKFILL, {"kind": "missing_or_stale", "priority": "low"}, follow=True)
    assert response.redirect_chain[-1][0] == CHANGELIST
    # "queued" keeps its medium item (low is not higher); "failed" and "cancelled" are held for a
    # person; the other four get low ones.
    assert "Queued 4 documents (missing or stale) at low priority. Workers embed them in the background." in (
        messages_of(response)
    )
    low = sorted(str(i.document) for i in QueueItem.objects.filter(priority="low", status="pending"))
    assert low == sorted(["stale", "stale-other-model", "missing", "failed-then-completed"])
    assert QueueItem.objects.get(document=every_state["queued"], status="pending").priority == "medium"
    assert not QueueItem.objects.filter(document__in=[every_state["fresh"], every_state["empty"]],
                                        status="pending").exists()  # fmt: skip


def test_backfill_includes_failed_and_cancelled_documents_only_when_asked(admin_client, every_state):
    page = estimate_text(admin_client.get(BACKFILL, {"kind": "missing_or_stale", "priority": "low",
                                                     "include_failed": "on"}))  # fmt: skip
    assert "<strong>7</strong> documents" in page and 'id="backfill-held-back"' not in page
    assert '<input type="hidden" name="include_failed" value="on">' in page
    response = admin_client.post(
        BACKFILL, {"kind": "missing_or_stale", "priority": "low", "include_failed": "on"}, follow=True
    )
    assert "Queued 6 documents (missing or stale) at low priority." in messages_of(response)[0]
    low = sorted(str(i.document) for i in QueueItem.objects.filter(priority="low", status="pending"))
    assert low == sorted(
        ["stale", "stale-other-model", "missing", "failed-then-completed", "failed", "cancelled"]
    )


def test_backfill_with_nothing_to_do_says_so(admin_client):
    make_document("fresh", chunks=1)
    page = estimate_text(admin_client.get(BACKFILL))
    assert "Nothing to backfill" in page and 'id="backfill-confirm"' not in page
    response = admin_client.post(BACKFILL, {"kind": "missing", "priority": "low"}, follow=True)
    assert any(m.startswith("Nothing was queued") for m in messages_of(response))


@pytest.mark.parametrize(
    "data", [{"kind": "everything", "priority": "low"}, {"kind": "missing", "priority": "urgent"}]
)
def test_backfill_refuses_a_bad_choice_and_queues_nothing(admin_client, every_state, data):
    before = QueueItem.objects.count()
    for response in (admin_client.post(BACKFILL, data), admin_client.get(BACKFILL, data)):
        assert response.status_code == 200
        assert "Select a valid choice" in response.content.decode()
        assert response.context["figures"] is None
    assert QueueItem.objects.count() == before


# The change page


def test_change_page_shows_chunks_and_embedding_metadata_but_never_the_vector(
    admin_client, every_state, configured_provider
):
    doc = every_state["failed-then-fresh"]
    response = admin_client.get(reverse("admin:documents_sourcedocument_change", args=[doc.pk]))
    html = re.sub(r"\s+", " ", response.content.decode())
    assert response.status_code == 200
    assert "Some text about foxes. part 0" in html  # the chunk's text, in the inline
    assert configured_provider in html
    assert f"<code>{doc.content_hash}</code> (MD5 of the current text)" in html
    assert "embedding-fresh" in html and "Failed</a>, medium priority" in html
    assert "timeout" in html  # the last error
    assert "0.123456" not in html and "embedding" not in re.findall(r'name="([^"]+)"', html)


def test_change_page_of_a_never_embedded_document(admin_client, every_state):
    doc = every_state["missing"]
    html = admin_client.get(reverse("admin:documents_sourcedocument_change", args=[doc.pk])).content.decode()
    assert "embedding-missing" in html and "never embedded" in html


def test_operators_change_page_has_no_delete_link(operator_client, every_state):
    doc = every_state["fresh"]
    html = operator_client.get(
        reverse("admin:documents_sourcedocument_change", args=[doc.pk])
    ).content.decode()
    assert "deletelink" not in html
    assert (
        operator_client.get(reverse("admin:documents_sourcedocument_delete", args=[doc.pk])).status_code
        == 403
    )
