"""Queue items, dead letters, stuck items and workers in the admin: filters, the retry / cancel / raise-priority / requeue / clear actions and
what they say, and counts that stay cheap on big tables."""

import pytest
from django.contrib.admin import helpers
from django.contrib.auth.models import Group, Permission, User
from django.test import Client

from documents.models import SourceDocument
from embedding_site.counting import EstimatedCountPaginator
from queue_admin.models import QueueItem, Worker

pytestmark = pytest.mark.django_db

ITEMS = "/admin/queue_admin/queueitem/"


def make_items(n, status="pending", **fields):
    """n documents, each with its trigger-queued item moved to `status` (and other fields)."""
    docs = SourceDocument.objects.bulk_create(
        [SourceDocument(title=f"{status} {i}", content=f"text {status} {i}") for i in range(n)]
    )
    items = QueueItem.objects.filter(document__in=docs)
    items.update(status=status, **fields)
    return list(items.order_by("document__title"))


def act(client, action, items, url=ITEMS, follow=True, **extra):
    # "index" as the admin's own action form sends it (the action bar above the list).
    data = {"action": action, "index": "0", helpers.ACTION_CHECKBOX_NAME: [str(i.pk) for i in items], **extra}
    return client.post(url, data, follow=follow)


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def statuses(items):
    return [QueueItem.objects.get(pk=i.pk).status for i in items]


def test_retry_puts_failed_and_cancelled_items_back_with_attempts_reset(admin_client):
    failed = make_items(2, "failed", retry_count=3, error_kind="permanent", error_message="HTTP 400")
    cancelled = make_items(1, "cancelled")
    done = make_items(1, "completed")
    # Permanent errors on unchanged text: a warning first, nothing retried yet.
    warning = act(admin_client, "retry", failed + cancelled + done)
    assert warning.status_code == 200 and 'id="retry-warning"' in warning.content.decode()
    assert statuses(failed + cancelled) == ["failed", "failed", "cancelled"]
    response = act(admin_client, "retry", failed + cancelled + done, permanent="all")
    assert statuses(failed + cancelled) == ["pending"] * 3
    item = QueueItem.objects.get(pk=failed[0].pk)
    assert (item.retry_count, item.error_kind, item.error_message) == (0, "", "")
    assert statuses(done) == ["completed"]
    said = messages_of(response)
    assert said[0] == (
        "Retried 3 items. 1 item left as they were: only failed or cancelled items are retried, "
        "and not when their document is already queued."
    )
    assert len(said) == 2 and "?id__in=" in said[1] and "See them in the queue" in said[1]
    assert all(str(item.pk) in said[1] for item in failed + cancelled + done)


def test_retry_skips_an_item_whose_document_is_already_queued_and_retries_one_item_per_document(admin_client):
    (failed,) = make_items(1, "failed")
    # The document was edited after it failed: the trigger queued a new live item.
    doc = failed.document
    doc.content = "edited text"
    doc.save()
    live = QueueItem.objects.get(document=doc, status="pending")
    act(admin_client, "retry", [failed])
    assert statuses([failed, live]) == ["failed", "pending"]

    (older,) = make_items(1, "failed")
    newer = QueueItem.objects.create(document=older.document, status="failed")
    act(admin_client, "retry", [older, newer])
    assert statuses([older, newer]) == ["failed", "pending"]


def test_cancel_takes_live_items_and_leaves_finished_ones(admin_client, admin_user):
    live = (
        make_items(1, "pending") + make_items(1, "processing", worker_id="w1") + make_items(1, "rate_limited")
    )
    done = make_items(1, "completed") + make_items(1, "failed")
    response = act(admin_client, "cancel", live + done)
    assert statuses(live) == ["cancelled"] * 3 and statuses(done) == ["completed", "failed"]
    assert QueueItem.objects.get(pk=live[0].pk).error_message == f"cancelled by {admin_user.username}"
    assert messages_of(response)[0].startswith("Cancelled 3 items. 2 items left as they were")


def test_raise_priority_only_touches_waiting_items_and_never_lowers(admin_client):
    waiting = make_items(2, "pending", priority="low")
    busy = make_items(1, "processing", priority="low", worker_id="w1")
    act(admin_client, "raise_priority", waiting + busy)
    assert [QueueItem.objects.get(pk=i.pk).priority for i in waiting + busy] == ["high", "high", "low"]


def test_items_deleted_meanwhile_are_reported_not_silently_dropped(admin_client):
    items = make_items(3, "failed")
    SourceDocument.objects.filter(pk=items[0].document_id).delete()  # cascades to its item
    response = act(admin_client, "retry", items)
    assert statuses(items[1:]) == ["pending", "pending"]
    assert "1 item no longer exist (deleted meanwhile) and were skipped." in messages_of(response)[0]


def test_an_action_with_nothing_selected_says_so_and_changes_nothing(admin_client):
    items = make_items(2, "failed")
    response = admin_client.post(ITEMS, {"action": "retry", "index": "0"}, follow=True)
    assert "Items must be selected in order to perform actions on them" in messages_of(response)[0]
    assert statuses(items) == ["failed", "failed"]


def test_dead_letters_list_only_failed_items_and_can_retry_them(admin_client):
    failed = make_items(2, "failed", error_kind="permanent", error_message="dimension mismatch: got 768")
    make_items(2, "completed")
    page = admin_client.get("/admin/queue_admin/deadletter/").content.decode()
    assert page.count("dimension mismatch: got 768") == 2 and "completed 0" not in page
    act(admin_client, "retry", failed[:1], url="/admin/queue_admin/deadletter/", permanent="all")
    assert statuses(failed) == ["pending", "failed"]


def test_retrying_a_permanent_error_on_unchanged_text_warns_first_and_can_retry_only_the_others(
    admin_client, sql
):
    doomed = make_items(
        2, "failed", error_kind="permanent", error_message="the text has 9 characters, too many"
    )
    edited = make_items(1, "failed", error_kind="permanent", error_message="HTTP 400")
    transient = make_items(1, "failed", error_kind="transient", error_message="timed out")
    # Edited after it failed (its text may be fixed); the trigger's new item is not wanted here.
    sql(
        "UPDATE source_documents SET updated_at = now() + interval '1 second' WHERE id = %s",
        [edited[0].document_id],
    )
    selected = doomed + edited + transient
    page = act(admin_client, "retry", selected, url="/admin/queue_admin/deadletter/").content.decode()
    assert (
        "<strong>2 of the 4 selected items</strong>" in page and "will most likely fail the same way" in page
    )
    assert page.count("the text has 9 characters, too many") == 2 and "timed out" not in page
    assert statuses(selected) == ["failed"] * 4  # a warning changes nothing
    assert 'value="others"' in page and "Retry only the other 2" in page

    response = act(admin_client, "retry", selected, url="/admin/queue_admin/deadletter/", permanent="others")
    assert statuses(selected) == ["failed", "failed", "pending", "pending"]
    assert messages_of(response)[0] == "Retried 2 items. 2 items left out: they would fail again as they are."


def test_stuck_lists_expired_leases_only_and_requeues_them(admin_client, sql):
    stuck = make_items(1, "processing", worker_id="dead-worker")
    healthy = make_items(1, "processing", worker_id="live-worker")
    sql(
        "UPDATE embedding_queue SET lease_expires_at = now() - interval '10 minutes' WHERE id = %s",
        [stuck[0].pk],
    )
    sql(
        "UPDATE embedding_queue SET lease_expires_at = now() + interval '10 minutes' WHERE id = %s",
        [healthy[0].pk],
    )
    page = admin_client.get("/admin/queue_admin/stuckitem/").content.decode()
    assert "dead-worker" in page and "live-worker" not in page
    response = act(admin_client, "requeue", stuck + healthy, url="/admin/queue_admin/stuckitem/")
    assert statuses(stuck + healthy) == ["pending", "processing"]
    assert QueueItem.objects.get(pk=stuck[0].pk).retry_count == 1  # counts as an attempt
    assert messages_of(response)[0].startswith("Requeued 1 item.")


@pytest.mark.parametrize(
    "query, expected",
    [
        ("status__exact=failed", {"failed 0"}),
        ("priority__exact=low", {"pending 0"}),
        ("error_kind__exact=permanent", {"failed 0"}),
        ("worker=w-7", {"processing 0"}),
    ],
)
def test_filters(admin_client, query, expected):
    make_items(1, "failed", error_kind="permanent")
    make_items(1, "pending", priority="low")
    make_items(1, "processing", worker_id="w-7")
    Worker.objects.create(worker_id="w-7", hostname="h", pid=7)
    page = admin_client.get(f"{ITEMS}?{query}").content.decode()
    shown = {title for title in ("failed 0", "pending 0", "processing 0") if f">{title}</a>" in page}
    assert shown == expected


def test_filtering_by_a_worker_whose_row_was_cleared_still_filters(admin_client):
    make_items(1, "failed", worker_id="gone-worker")
    make_items(1, "pending")
    page = admin_client.get(f"{ITEMS}?worker=gone-worker").content.decode()
    assert ">failed 0</a>" in page and ">pending 0</a>" not in page


def test_search_by_document_title_and_id(admin_client):
    items = make_items(2, "pending")
    page = admin_client.get(f"{ITEMS}?q=pending+1").content.decode()
    assert ">pending 1</a>" in page and ">pending 0</a>" not in page
    page = admin_client.get(f"{ITEMS}?q={items[0].document_id}").content.decode()
    assert ">pending 0</a>" in page and ">pending 1</a>" not in page


def test_big_lists_show_an_estimate_and_say_so(admin_client, monkeypatch):
    make_items(12, "pending")
    exact = admin_client.get(ITEMS).content.decode()
    assert "≈" not in exact and "12 queue items" in exact
    monkeypatch.setattr(EstimatedCountPaginator, "exact_up_to", 5)
    estimated = admin_client.get(ITEMS).content.decode()
    assert 'class="sidecar-estimate"' in estimated and "An estimate from PostgreSQL" in estimated
    # A filter that matches few rows is still counted exactly.
    make_items(2, "failed")
    assert "2 queue items" in admin_client.get(f"{ITEMS}?status__exact=failed").content.decode()


def test_people_who_may_only_view_cannot_run_actions(db):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_queueitem", "view_worker"]))
    client = Client()
    client.force_login(viewer)
    failed = make_items(1, "failed")
    page = client.get(ITEMS).content.decode()
    assert 'name="action"' not in page
    act(client, "retry", failed)
    assert statuses(failed) == ["failed"]


def test_queue_operators_can_retry(db):
    operator = User.objects.create_user("op", password="pw", is_staff=True)
    operator.groups.add(Group.objects.get(name="Queue operators"))
    client = Client()
    client.force_login(operator)
    failed = make_items(1, "failed")
    act(client, "retry", failed, url="/admin/queue_admin/deadletter/")
    assert statuses(failed) == ["pending"]


def test_workers_page_colours_heartbeats_and_clears_only_dead_workers(admin_client, sql):
    Worker.objects.create(worker_id="fresh", hostname="a", pid=1, status="active")
    Worker.objects.create(worker_id="late", hostname="a", pid=2, status="idle")
    Worker.objects.create(worker_id="silent", hostname="b", pid=3, status="idle")
    Worker.objects.create(worker_id="killed", hostname="b", pid=4, status="dead")
    interval_s = 30  # the default worker_heartbeat_interval_ms
    sql("UPDATE embedding_queue_workers SET last_heartbeat = now() - make_interval(secs => %s) WHERE worker_id = 'late'",
        [interval_s * 2])  # fmt: skip
    sql("UPDATE embedding_queue_workers SET last_heartbeat = now() - make_interval(secs => %s) WHERE worker_id = 'silent'",
        [interval_s * 4])  # fmt: skip
    page = admin_client.get("/admin/queue_admin/worker/").content.decode()
    for worker, health in [("fresh", "ok"), ("late", "late"), ("silent", "dead"), ("killed", "dead")]:
        row = page[page.index(f">{worker}</a>") :].split("</tr>")[0]
        assert f'class="sidecar-heartbeat {health}"' in row, worker

    response = act(admin_client, "clear_dead", list(Worker.objects.all()), url="/admin/queue_admin/worker/")
    assert set(Worker.objects.values_list("pk", flat=True)) == {"fresh", "late"}
    assert messages_of(response) == ["Cleared 2 workers. 2 workers left as they were: live workers are kept."]


def test_retry_failed_command_retries_dead_letters_by_kind(capsys):
    from django.core.management import CommandError, call_command

    transient = make_items(2, "failed", error_kind="transient")
    permanent = make_items(1, "failed", error_kind="permanent")
    call_command("retry_failed", "--error-kind", "transient", "--dry-run")
    assert "2 failed items would be retried." in capsys.readouterr().out
    assert statuses(transient) == ["failed", "failed"]
    call_command("retry_failed", "--error-kind", "transient")
    assert "Retried 2 of 2 failed items." in capsys.readouterr().out
    assert statuses(transient + permanent) == ["pending", "pending", "failed"]
    with pytest.raises(CommandError, match="--document must be document ids"):
        call_command("retry_failed", "--document", "not-a-uuid")
    assert statuses(permanent) == ["failed"]
