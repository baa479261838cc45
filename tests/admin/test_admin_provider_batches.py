"""The Batch API in the admin: the backfill page offers it past the setting's size, with time
and cost both ways; Provider batches lists what was sent and cancels it. Against the fake
OpenAI Batch API on loopback (tests/batch_server.py) and the real PostgreSQL."""

import html
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from documents.models import SourceDocument
from queue_admin import backfill, provider_batches, status
from queue_admin.models import ProviderBatch, QueueItem
from tests.helpers import set_config

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]

BACKFILL = reverse("admin:documents_sourcedocument_backfill")
BATCHES = reverse("admin:queue_admin_providerbatch_changelist")


def page_text(response) -> str:
    return re.sub(r"\s+", " ", html.unescape(response.content.decode()))


def three_documents():
    return [
        SourceDocument.objects.create(title=f"doc {n}", content=f"text number {n} " * 40) for n in range(3)
    ]


def test_the_backfill_page_shows_both_ways_and_sends_through_the_batch_api(admin_client, batch_api, settings):
    settings.EMBEDDING_PRICE_PER_MILLION_TOKENS = 0.02
    set_config(batch_api_min_documents=3)
    docs = three_documents()
    text = page_text(admin_client.get(BACKFILL))

    figures = backfill.estimate(backfill.count(backfill.MISSING_OR_STALE, "fake-batch-model"))
    assert 'id="how-to-embed"' in text
    assert f"Through the workers, now, cost {figures.cost:.4f}." in text
    half = figures.cost / 2
    assert (
        f"Through the provider's Batch API: answered within 24 hours, cost {half:.4f} (half the price)."
        in text
    )

    # Once batches have come back, the page says how long they took lately (the median).
    now = timezone.now()
    for hours in (1, 2, 9):
        ProviderBatch.objects.create(
            model="m", state="done", provider_status="completed", submitted_at=now - timedelta(hours=hours),
            finished_at=now,
        )  # fmt: skip
    text = page_text(admin_client.get(BACKFILL))
    assert (
        "Through the provider's Batch API: answered within 24 hours (lately in about 2 hours), cost" in text
    )
    ProviderBatch.objects.all().delete()

    response = admin_client.post(
        BACKFILL, {"kind": backfill.MISSING_OR_STALE, "priority": "low", "via": "batch_api"}, follow=True
    )
    (batch,) = ProviderBatch.objects.all()
    assert batch.documents == 3 and batch.started_by == "admin"
    assert "3 documents go to the provider's Batch API" in page_text(response)
    assert f'href="{BATCHES}"' in page_text(response)
    assert {item.worker_id for item in QueueItem.objects.filter(document__in=docs)} == {batch.worker_id}

    provider_batches.advance_all()
    batch.refresh_from_db()
    assert batch.state == ProviderBatch.State.SUBMITTED


def test_below_the_setting_the_batch_api_is_not_offered_and_a_forged_choice_sends_nothing(
    admin_client, batch_api
):
    set_config(batch_api_min_documents=4)
    docs = three_documents()
    assert 'id="how-to-embed"' not in page_text(admin_client.get(BACKFILL))

    response = admin_client.post(
        BACKFILL, {"kind": backfill.MISSING_OR_STALE, "priority": "low", "via": "batch_api"}, follow=True
    )
    assert "The Batch API is not offered for this backfill" in page_text(response)
    assert not ProviderBatch.objects.exists()
    assert {item.status for item in QueueItem.objects.filter(document__in=docs)} == {"pending"}
    assert batch_api.requests == []


def test_provider_batches_are_listed_and_cancelled_from_the_admin(admin_client, batch_api):
    three_documents()
    batch_api.polls_before_done, batch_api.lines_finished = 5, 1
    (batch,) = provider_batches.start(backfill.MISSING_OR_STALE, priority="low", started_by="admin")
    provider_batches.advance_all()
    provider_batches.advance_all()  # polled once: in progress
    batch.refresh_from_db()

    text = page_text(admin_client.get(BATCHES))
    assert batch.provider_batch_id in text and "in_progress · 0 of 3 requests answered" in text
    change = page_text(admin_client.get(reverse("admin:queue_admin_providerbatch_change", args=[batch.pk])))
    assert f"?worker=batch-api%3A{batch.pk}" in change

    response = admin_client.post(
        BATCHES, {"action": "cancel_batches", "_selected_action": [str(batch.pk)]}, follow=True
    )
    assert "Cancelled 1 batch." in page_text(response)
    batch.refresh_from_db()
    assert batch.state == ProviderBatch.State.CANCELLING
    provider_batches.advance_all()
    batch.refresh_from_db()
    assert (batch.state, batch.completed, batch.returned) == (ProviderBatch.State.DONE, 1, 2)


def test_re_embed_selected_offers_the_batch_api_and_re_embeds_unchanged_documents_through_it(
    admin_client, batch_api
):
    set_config(batch_api_min_documents=3)
    docs = three_documents()
    (batch,) = provider_batches.start(backfill.MISSING_OR_STALE, priority="low")
    for _ in range(3):
        provider_batches.advance_all()
    assert all(item.status == "completed" for item in QueueItem.objects.filter(document__in=docs))
    ids = [str(doc.pk) for doc in docs]
    changelist = reverse("admin:documents_sourcedocument_changelist")

    confirmation = admin_client.post(
        changelist, {"action": "reembed_selected", "_selected_action": ids, "index": 0}
    )
    assert 'id="how-to-embed"' in page_text(confirmation)
    response = admin_client.post(
        changelist,
        {"action": "reembed_selected", "_selected_action": ids, "confirm_reembed": "yes", "select_across": "0",
         "confirmed_documents": "3", "via": "batch_api"},
        follow=True,
    )  # fmt: skip
    assert "3 documents go to the provider's Batch API" in page_text(response)
    again = ProviderBatch.objects.exclude(pk=batch.pk).get()
    for _ in range(3):
        provider_batches.advance_all()
    again.refresh_from_db()
    # Unchanged, but forced: every one sent and written again.
    assert (again.state, again.texts_sent, again.completed) == (ProviderBatch.State.DONE, 3, 3)


def test_the_dashboard_and_queue_status_tell_documents_at_the_provider_from_the_workers_work(
    admin_client, batch_api
):
    three_documents()
    provider_batches.start(backfill.MISSING_OR_STALE, priority="low")
    provider_batches.advance_all()

    text = page_text(admin_client.get(reverse("admin:index")))
    assert f'<a href="{BATCHES}" id="at-the-provider">3</a> of them at the provider\'s Batch API' in text
    assert "nothing to do" in text  # time to drain: none of it is the workers'
    figures = status.queue_status()
    assert figures["counts"]["live"] == 3 and figures["documents_at_provider_batch_api"] == 3
    assert "at the provider's Batch API: 3 documents" in status.format_status(figures)
