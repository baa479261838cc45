"""Several requests in flight per worker (the `requests_in_flight` setting): run()'s lanes send
the next batches while one is at the provider, on the real database with a fake embedder (these
tests are about the queue, not the model); and the settings that follow the provider."""

import importlib
import threading
import time

import pytest
from django.db import connection
from django.test import override_settings

from documents.models import DocumentEmbedding, SourceDocument
from queue_admin import config, limits
from queue_admin.config_schema import SCHEMA
from queue_admin.models import ConfigChange, QueueConfig, QueueItem
from queue_admin.worker import QueueWorker
from tests.fakes import FakeEmbedderForQueueTests
from tests.helpers import set_config

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]


class SlowFakeEmbedderForQueueTests(FakeEmbedderForQueueTests):
    """Answers after `seconds`, like a provider far away, and counts how many calls it holds
    at once."""

    def __init__(self, seconds: float = 0.05):
        super().__init__()
        self.seconds = seconds
        self.at_once = 0
        self.most_at_once = 0
        self._count_lock = threading.Lock()

    def embed(self, texts, may_retry=None):
        with self._count_lock:
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            time.sleep(self.seconds)
            return super().embed(texts)
        finally:
            with self._count_lock:
                self.at_once -= 1


def run_worker(embedder, **kwargs):
    with QueueWorker(embedder, name="test") as worker:
        return worker.run(**kwargs)


def sessions() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_three_lanes_keep_three_requests_at_the_provider_and_embed_each_document_once():
    set_config(batch_size=4, requests_in_flight=3)
    docs = SourceDocument.objects.bulk_create(SourceDocument(content=f"far away {n}") for n in range(60))
    embedder = SlowFakeEmbedderForQueueTests()
    before = sessions()
    report = run_worker(embedder)
    assert embedder.most_at_once == 3
    assert (report.claimed, report.completed) == (60, 60)
    assert sorted(embedder.texts_sent) == sorted(d.content for d in docs)  # none twice, none lost
    assert set(QueueItem.objects.values_list("status", flat=True)) == {"completed"}
    assert DocumentEmbedding.objects.count() == 60
    # Every lane's database session (and the writer's) is closed when run() returns.
    deadline = time.monotonic() + 5
    while sessions() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    # At most as many as before: a backend of an earlier test may still have been leaving when
    # `before` was counted (as in test_worker.py's writer-session check).
    assert sessions() <= before


def test_one_lane_sends_one_request_at_a_time():
    set_config(batch_size=4, requests_in_flight=1)
    SourceDocument.objects.bulk_create(SourceDocument(content=f"near {n}") for n in range(12))
    embedder = SlowFakeEmbedderForQueueTests(seconds=0.02)
    assert run_worker(embedder).completed == 12
    assert embedder.most_at_once == 1


def test_lanes_together_stop_at_max_batches():
    set_config(batch_size=2, requests_in_flight=4)
    SourceDocument.objects.bulk_create(SourceDocument(content=f"budget {n}") for n in range(20))
    report = run_worker(SlowFakeEmbedderForQueueTests(), max_batches=3)
    assert report.claimed == 6 and report.completed == 6
    assert QueueItem.objects.filter(status="pending").count() == 14


def test_a_stop_with_lanes_in_flight_loses_nothing():
    """Stopped while lanes are at the provider: what was answered is written, the rest goes
    back to the queue untouched; a second run finishes the job with nothing done twice."""
    set_config(batch_size=3, requests_in_flight=3)
    docs = SourceDocument.objects.bulk_create(SourceDocument(content=f"stop {n}") for n in range(45))
    embedder = SlowFakeEmbedderForQueueTests(seconds=0.1)
    with QueueWorker(embedder, name="test") as worker:
        threading.Timer(0.25, worker.stop_requested.set).start()
        first = worker.run()
    assert 0 < first.completed < 45
    assert QueueItem.objects.filter(status="processing").count() == 0  # nothing left held
    second = run_worker(embedder)
    assert first.completed + second.completed == 45
    assert sorted(embedder.texts_sent) == sorted(d.content for d in docs)


def test_marathon_means_one_request_at_a_time_too():
    set_config(requests_in_flight=4)
    config.apply_preset(
        "marathon", loaded={"batch_size": 32, "requests_in_flight": 4, "max_concurrent_workers": 2}
    )
    assert (config.current().batch_size, config.current().requests_in_flight) == (1, 1)


@pytest.mark.parametrize(
    "provider, batch_size, lanes", [("local", 32, 1), ("openai", 256, 4), ("tei", 32, 4)]
)
def test_an_unset_batch_size_and_requests_in_flight_follow_the_provider(provider, batch_size, lanes):
    """Nobody set them (no row): the provider's defaults, which the settings page names."""
    assert not QueueConfig.objects.filter(config_key__in=["batch_size", "requests_in_flight"]).exists()
    with override_settings(EMBEDDING_PROVIDER=provider):
        assert SCHEMA["batch_size"].effective_default == batch_size
        assert (
            "(it follows the provider: local 32, openai 256, tei 32)" in SCHEMA["batch_size"].default_display
        )
        assert SCHEMA["requests_in_flight"].effective_default == lanes
        assert (
            "(it follows the provider: local 1, openai 4, tei 4)"
            in SCHEMA["requests_in_flight"].default_display
        )


def test_a_value_a_person_set_wins_over_the_providers_default():
    set_config(requests_in_flight=2)
    assert config.current().requests_in_flight == 2


@pytest.mark.parametrize(
    "migration_name, key, seeded, chosen",
    [
        ("0020_settings_that_follow_the_provider", "batch_size", 32, 64),
        ("0024_requests_in_flight_follow_the_provider", "requests_in_flight", 1, 2),
    ],
)
def test_the_upgrade_unpins_a_seeded_value_but_keeps_a_chosen_one(migration_name, key, seeded, chosen):
    migration = importlib.import_module(f"queue_admin.migrations.{migration_name}")
    from django.apps import apps

    QueueConfig.objects.create(config_key=key, config_value=seeded)  # as 0003 seeded it
    migration.follow_the_provider(apps, None)
    assert not QueueConfig.objects.filter(config_key=key).exists()

    config.set_value(key, chosen)  # a person chose another value, then back to the seeded one
    config.set_value(key, seeded)
    assert ConfigChange.objects.filter(config_key=key).exists()
    migration.follow_the_provider(apps, None)
    assert QueueConfig.objects.get(config_key=key).config_value == seeded


def test_items_to_give_back_survive_a_failed_give_back(monkeypatch):
    """A batch that failed while the database was away waits in the worker to be given back;
    if giving it back fails again (still away: with several lanes, another lane may try first),
    the items stay listed for the next try instead of waiting out their lease."""
    from queue_admin import queue_sql

    set_config(batch_size=4)
    SourceDocument.objects.bulk_create(SourceDocument(content=f"held {n}") for n in range(4))
    with QueueWorker(FakeEmbedderForQueueTests(), name="test") as worker:
        _, items = queue_sql.claim_batch(
            worker.worker_id, 4, lease_seconds=300, weights=config.current().priority_weights
        )
        held = [item.id for item in items]
        worker._to_release = [list(held)]
        real_release = queue_sql.release
        calls = []

        def release_fails_once(ids, worker_id):
            calls.append(list(ids))
            if len(calls) == 1:
                raise RuntimeError("the database is still away")
            return real_release(ids, worker_id)

        monkeypatch.setattr(queue_sql, "release", release_fails_once)
        with pytest.raises(RuntimeError):
            worker._prepare_batch()
        assert [sorted(batch) for batch in worker._to_release] == [sorted(held)]  # kept, not dropped
        report = worker.run()
    assert report.completed == 4
    assert set(QueueItem.objects.values_list("status", flat=True)) == {"completed"}


class HeldCountingFakeEmbedderForQueueTests(SlowFakeEmbedderForQueueTests):
    """Answers after `seconds` and, meanwhile, notes how many items are held (processing) at
    once: what a SIGKILL at that moment would leave to the leases; `most_held_late` counts only
    from `look_after` seconds into each call, when the write of the batch before has finished.
    `on_call` runs at each call."""

    def __init__(self, seconds: float = 0.4, on_call=None, look_after: float = 0.2):
        super().__init__(seconds)
        self.most_held = self.most_held_late = 0
        self.on_call = on_call or (lambda embedder: None)
        self.look_after = look_after

    def held(self) -> int:
        return QueueItem.objects.filter(status="processing").count()

    def embed(self, texts, may_retry=None):
        with self._count_lock:
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            self.on_call(self)
            start = time.monotonic()
            while (now := time.monotonic()) < start + self.seconds:
                held = self.held()
                self.most_held = max(self.most_held, held)
                if now >= start + self.look_after:
                    self.most_held_late = max(self.most_held_late, held)
                time.sleep(0.02)
            return FakeEmbedderForQueueTests.embed(self, texts)
        finally:
            with self._count_lock:
                self.at_once -= 1


class FarAwayHeldCountingFakeEmbedderForQueueTests(HeldCountingFakeEmbedderForQueueTests):
    """The same, as a remote provider (shared limits, breaker, and the lane claims ahead)."""

    is_remote = True
    model_id = "far-away-fake-embedder-for-queue-tests@1"


def test_with_a_remote_provider_a_lane_claims_its_next_batch_while_one_is_at_the_provider():
    """The next batch is claimed and planned while the request before is out, so its round trips
    do not wait for the answer; one request at a time still, and never more than two batches
    held (the one at the provider, the one claimed ahead or being written)."""
    set_config(batch_size=4, requests_in_flight=1)
    docs = SourceDocument.objects.bulk_create(SourceDocument(content=f"ahead {n}") for n in range(16))
    embedder = FarAwayHeldCountingFakeEmbedderForQueueTests()
    report = run_worker(embedder)
    assert embedder.most_held_late == 8  # the next batch, claimed while this one is out
    assert embedder.most_held == 8  # and never more than two batches of 4
    assert embedder.most_at_once == 1
    assert (report.claimed, report.completed) == (16, 16)
    assert sorted(embedder.texts_sent) == sorted(d.content for d in docs)  # none twice, none lost
    assert set(QueueItem.objects.values_list("status", flat=True)) == {"completed"}


def test_a_local_model_does_not_claim_ahead():
    """Its batch computes on this machine's cores: once the batch before is written (in the
    first moments of the call), nothing is held beyond the batch at the model."""
    set_config(batch_size=4, requests_in_flight=1)
    SourceDocument.objects.bulk_create(SourceDocument(content=f"near {n}") for n in range(12))
    embedder = HeldCountingFakeEmbedderForQueueTests()
    assert run_worker(embedder).completed == 12
    assert embedder.most_held_late == 4


def test_a_stop_gives_back_the_batch_claimed_ahead_unsent():
    """Stopped while a batch is at the provider and the next one is claimed: the answered one is
    written, the one claimed ahead goes back to the queue at once, never sent; a second run
    finishes the job with nothing sent twice."""
    set_config(batch_size=4, requests_in_flight=1)
    docs = SourceDocument.objects.bulk_create(SourceDocument(content=f"stop ahead {n}") for n in range(12))
    worker_box = []

    def stop_once_the_next_batch_is_claimed(embedder):
        deadline = time.monotonic() + 10
        while embedder.held() < 8:
            assert time.monotonic() < deadline, "the next batch was never claimed ahead"
            time.sleep(0.01)
        worker_box[0].stop_requested.set()

    embedder = FarAwayHeldCountingFakeEmbedderForQueueTests(on_call=stop_once_the_next_batch_is_claimed)
    with QueueWorker(embedder, name="test") as worker:
        worker_box.append(worker)
        first = worker.run()
    # The batch claimed ahead is counted as claimed and given back, not embedded.
    assert (first.claimed, first.completed, first.requeued) == (8, 4, 4)
    assert len(embedder.texts_sent) == 4
    assert QueueItem.objects.filter(status="processing").count() == 0  # given back, not held
    assert QueueItem.objects.filter(status="pending").count() == 8
    second = run_worker(FarAwayHeldCountingFakeEmbedderForQueueTests(seconds=0.01, look_after=0))
    assert second.completed == 8
    assert set(QueueItem.objects.values_list("status", flat=True)) == {"completed"}
    assert DocumentEmbedding.objects.count() == len(docs)


class QuotaWatchingFakeEmbedderForQueueTests(FarAwayHeldCountingFakeEmbedderForQueueTests):
    """The remote fake, noting during each call how many requests the shared quota window has
    granted (the most seen within the call), one entry per call."""

    def __init__(self):
        super().__init__(seconds=0.4)
        self.window_during_call: list[int] = []

    def embed(self, texts, may_retry=None):
        self.window_during_call.append(0)
        return super().embed(texts, may_retry)

    def held(self) -> int:
        use = limits.quota_use(rpm=1, tpm=1).get(self.model_id)
        granted = int(use.requests_used) if use else 0
        self.window_during_call[-1] = max(self.window_during_call[-1], granted)
        return super().held()


def test_a_batch_claimed_ahead_has_its_quota_taken_while_the_one_before_is_out():
    """Its first request's share of the shared rate limit is taken with the claim, so the lane
    sends it on the answer of the one before without that round trip; each request is counted
    once, whichever took it."""
    set_config(batch_size=4, requests_in_flight=1)
    SourceDocument.objects.bulk_create(SourceDocument(content=f"quota ahead {n}") for n in range(16))
    embedder = QuotaWatchingFakeEmbedderForQueueTests()
    report = run_worker(embedder)
    assert report.completed == 16
    # During request k the window already holds request k + 1 (taken by the claim ahead); the
    # last has no batch after it.
    assert embedder.window_during_call == [2, 3, 4, 4]
    assert int(limits.quota_use(rpm=1, tpm=1)[embedder.model_id].requests_used) == 4
