"""The queue SQL: claim order, leases, compare-and-set on every write."""

import uuid
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.db.models.functions import Now
from django.utils import timezone

from documents.models import SourceDocument
from queue_admin import queue_sql
from queue_admin.models import QueueItem
from tests.helpers import database_url

pytestmark = pytest.mark.django_db

WEIGHTS = {"high": 3, "medium": 2, "low": 1}


def make_items(n, priority="medium", age_seconds=0):
    docs = SourceDocument.objects.bulk_create(
        SourceDocument(content=f"text {uuid.uuid4()}") for _ in range(n)
    )
    ids = [d.id for d in docs]
    # The database's clock, as the claim query uses, not Python's.
    QueueItem.objects.filter(document_id__in=ids).update(
        priority=priority, next_attempt_at=Now() - timedelta(seconds=age_seconds)
    )
    return list(QueueItem.objects.filter(document_id__in=ids))


def claim(n, worker="w1", lease=300):
    return queue_sql.claim_batch(worker, n, lease_seconds=lease, weights=WEIGHTS)


def test_claim_takes_highest_priority_first_then_oldest():
    low = make_items(2, "low")
    high = make_items(2, "high")
    medium_old = make_items(1, "medium", age_seconds=60)
    medium_new = make_items(1, "medium")
    _, items = claim(4)
    claimed = {i.id for i in items}
    assert claimed == {*(i.id for i in high), medium_old[0].id, medium_new[0].id}
    assert not claimed & {i.id for i in low}


def test_claim_sets_processing_worker_batch_and_lease():
    make_items(3)
    batch_id, items = claim(10, worker="worker-a", lease=120)
    assert len(items) == 3
    for row in QueueItem.objects.all():
        assert (row.status, row.worker_id, row.batch_id) == ("processing", "worker-a", batch_id)
        remaining = (row.lease_expires_at - timezone.now()).total_seconds()
        assert 100 < remaining <= 120


def test_ageing_lets_old_low_priority_work_overtake_fresh_high():
    old_low = make_items(1, "low", age_seconds=queue_sql.AGEING_SECONDS_PER_POINT * 3)
    make_items(1, "high")
    _, items = claim(1)
    assert [i.id for i in items] == [old_low[0].id]


def test_items_not_yet_due_are_not_claimed():
    make_items(2, age_seconds=-60)  # next_attempt_at a minute from now
    assert claim(10)[1] == []


def test_rate_limited_items_come_back_once_retry_after_passed():
    (item,) = make_items(1)
    QueueItem.objects.filter(id=item.id).update(
        status="rate_limited", next_attempt_at=timezone.now() + timedelta(hours=1)
    )
    assert claim(10)[1] == []
    QueueItem.objects.filter(id=item.id).update(next_attempt_at=Now() - timedelta(seconds=1))
    assert [i.id for i in claim(10)[1]] == [item.id]


def test_a_claimed_item_is_not_claimed_again():
    make_items(5)
    first = {i.id for i in claim(3, worker="a")[1]}
    second = {i.id for i in claim(10, worker="b")[1]}
    assert len(first) == 3 and len(second) == 2 and not first & second
    assert claim(10, worker="c")[1] == []


def test_complete_is_compare_and_set_on_worker():
    make_items(2)
    _, items = claim(2, worker="a")
    ids = [i.id for i in items]
    assert queue_sql.complete(ids, "someone-else", {}) == set()
    assert queue_sql.complete(ids, "a", {ids[0]: 12}) == set(ids)
    done = QueueItem.objects.get(id=ids[0])
    assert (done.status, done.actual_tokens, done.lease_expires_at) == ("completed", 12, None)
    assert queue_sql.complete(ids, "a", {}) == set()  # already done: nothing changes twice


def test_transient_failure_backs_off_then_dead_letters_after_max_retries():
    (item,) = make_items(1)
    QueueItem.objects.filter(id=item.id).update(max_retries=1)
    claim(1, worker="a")
    assert queue_sql.retry_later(item.id, "a", delay_seconds=30, kind="transient", message="503") == "pending"
    row = QueueItem.objects.get(id=item.id)
    assert (row.retry_count, row.error_kind, row.worker_id) == (1, "transient", "")
    assert row.next_attempt_at > timezone.now() + timedelta(seconds=20)

    QueueItem.objects.filter(id=item.id).update(next_attempt_at=Now())
    claim(1, worker="a")
    assert (
        queue_sql.retry_later(item.id, "a", delay_seconds=30, kind="transient", message="503 again")
        == "failed"
    )
    row = QueueItem.objects.get(id=item.id)
    assert (row.status, row.retry_count, row.error_message) == ("failed", 2, "503 again")


def test_permanent_failure_goes_straight_to_failed_and_checks_owner():
    (item,) = make_items(1)
    claim(1, worker="a")
    assert not queue_sql.fail(item.id, "b", kind="permanent", message="bad")
    assert queue_sql.fail(item.id, "a", kind="permanent", message="wrong dimensions: 12")
    row = QueueItem.objects.get(id=item.id)
    assert (row.status, row.error_kind, row.error_message) == ("failed", "permanent", "wrong dimensions: 12")


def test_rate_limited_waits_without_counting_an_attempt():
    (item,) = make_items(1)
    claim(1, worker="a")
    until = timezone.now() + timedelta(seconds=20)
    assert queue_sql.mark_rate_limited([item.id], "a", until=until, message="429") == 1
    row = QueueItem.objects.get(id=item.id)
    assert (row.status, row.retry_count, row.error_kind) == ("rate_limited", 0, "rate_limited")
    assert 15_000 < row.rate_limit_delay_ms <= 20_000


def test_release_returns_items_at_once_without_an_attempt():
    make_items(3)
    _, items = claim(3, worker="a")
    assert queue_sql.release([i.id for i in items], "a") == 3
    assert set(QueueItem.objects.values_list("status", "retry_count", "worker_id")) == {("pending", 0, "")}


def test_expired_leases_are_reclaimed_and_count_as_an_attempt():
    make_items(2)
    _, items = claim(2, worker="dead-worker")
    QueueItem.objects.filter(id=items[0].id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    QueueItem.objects.filter(id=items[1].id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1), retry_count=3, max_retries=3
    )
    assert queue_sql.reclaim_expired_leases() == (1, 1)
    requeued = QueueItem.objects.get(id=items[0].id)
    assert (requeued.status, requeued.retry_count, requeued.worker_id) == ("pending", 1, "")
    assert "dead-worker" in requeued.error_message
    assert QueueItem.objects.get(id=items[1].id).status == "failed"
    # the old owner's late completion is refused
    assert queue_sql.complete([items[0].id], "dead-worker", {}) == set()


def test_heartbeat_extends_only_this_workers_leases():
    make_items(2)
    _, mine = claim(1, worker="a", lease=10)
    claim(1, worker="b", lease=10)
    assert queue_sql.heartbeat("a", 600) == 1
    assert (QueueItem.objects.get(id=mine[0].id).lease_expires_at - timezone.now()).total_seconds() > 500
    assert (QueueItem.objects.get(worker_id="b").lease_expires_at - timezone.now()).total_seconds() < 11


@pytest.mark.django_db(transaction=True)
def test_heartbeat_skips_rows_its_own_write_holds_instead_of_waiting_for_them():
    """The worker's writer holds some of its rows while it completes them; a heartbeat that
    waited for them while holding the others deadlocked with that write."""
    make_items(2)
    _, mine = claim(2, worker="a", lease=10)
    with psycopg.connect(database_url()) as writer:
        writer.execute("UPDATE embedding_queue SET updated_at = now() WHERE id = %s", [mine[0].id])  # held
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '3s'")  # waiting would fail this test, not hang it
            try:
                assert queue_sql.heartbeat("a", 600) == 1
            finally:
                cursor.execute("RESET lock_timeout")
        writer.rollback()
    leases = {item.id: item.lease_expires_at for item in QueueItem.objects.filter(worker_id="a")}
    assert (leases[mine[1].id] - timezone.now()).total_seconds() > 500
    assert (leases[mine[0].id] - timezone.now()).total_seconds() < 11  # the next beat's
