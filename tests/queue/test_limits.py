"""Shared rate limits and circuit breaker (queue_admin/limits.py) against the real PostgreSQL.

Quotas are checked with real OS processes hammering one provider row; the breaker's single
trial with threads released together on a barrier, each on its own database connection.
Waits are kept short by giving the quotas a window of a few seconds instead of a minute
(`window_seconds`; the workers always use 60).
"""

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from django.db import connection

from queue_admin import limits
from queue_admin.models import ProviderLimitState
from tests.helpers import ROOT, database_url

BIG = 10**9  # a quota that never binds, to test the other one alone

# A process that waits for "go" on stdin, then calls acquire as fast as it can for a while and
# prints the monotonic time of every grant (CLOCK_MONOTONIC is one clock for the whole machine).
HAMMER = """
import json, sys, time
import django
django.setup()
from django.db import connection
from queue_admin import limits
args = json.loads(sys.argv[1])
connection.ensure_connection()  # connect before the start line
print("ready", flush=True)
sys.stdin.readline()
grants, refusals, end = [], 0, time.monotonic() + args["seconds"]
while time.monotonic() < end:
    if limits.acquire(args["key"], args["requests"], args["tokens"], rpm=args["rpm"], tpm=args["tpm"],
                      window_seconds=args["window"]) == 0:
        grants.append(time.monotonic())
    else:
        refusals += 1
print(json.dumps({"grants": grants, "refusals": refusals}), flush=True)
"""


def hammer_in_processes(count, **args):
    """Start `count` processes, release them together, return every grant's time, sorted."""
    env = dict(os.environ, DATABASE_URL=database_url(), DEBUG="1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, json.dumps(args)],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for _ in range(count)
    ]  # fmt: skip
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert all(result["refusals"] > 0 for result in results), "each process must have been refused too"
    return sorted(t for result in results for t in result["grants"])


# --- rate limits ------------------------------------------------------------------------


W = 3  # the test window, seconds: 61 slots of 0.05 s


@pytest.mark.django_db
def test_a_full_quota_goes_at_once_then_nothing_until_it_leaves_the_window():
    assert limits.acquire("p", requests=60, rpm=60, tpm=BIG, window_seconds=W) == 0
    wait = limits.acquire("p", rpm=60, tpm=BIG, window_seconds=W)
    assert W - 0.1 < wait <= W * 61 / 60  # the burst's slot leaves after 61 slots
    assert limits.acquire("p", rpm=60, tpm=BIG, window_seconds=W) <= wait  # the refusal consumed nothing
    time.sleep(wait + 0.02)
    assert limits.acquire("p", requests=60, rpm=60, tpm=BIG, window_seconds=W) == 0  # all of it, again
    assert limits.acquire("p", rpm=60, tpm=BIG, window_seconds=W) > W - 0.1


@pytest.mark.django_db
def test_tokens_per_minute_are_enforced_and_the_wait_is_for_the_oldest_grants_needed():
    assert limits.acquire("p", tokens=3000, rpm=BIG, tpm=6000, window_seconds=W) == 0
    time.sleep(1)
    assert limits.acquire("p", tokens=3000, rpm=BIG, tpm=6000, window_seconds=W) == 0
    # 10 more tokens need only the first grant gone; 3,010 need both.
    assert W - 1.2 < limits.acquire("p", tokens=10, rpm=BIG, tpm=6000, window_seconds=W) <= W * 61 / 60 - 1
    assert W - 0.1 < limits.acquire("p", tokens=3010, rpm=BIG, tpm=6000, window_seconds=W) <= W * 61 / 60
    assert ProviderLimitState.objects.get(provider_key="p").window_tokens == [3000, 3000]  # refusals: nothing


@pytest.mark.django_db
def test_an_ask_larger_than_the_quota_is_granted_into_an_empty_window_and_then_fills_it():
    assert limits.acquire("p", tokens=100, rpm=BIG, tpm=600, window_seconds=W) == 0
    assert W - 0.1 < limits.acquire("p", tokens=1200, rpm=BIG, tpm=600, window_seconds=W) <= W * 61 / 60

    assert limits.acquire("q", tokens=1200, rpm=BIG, tpm=600, window_seconds=W) == 0  # empty: granted
    assert W - 0.1 < limits.acquire("q", tokens=1, rpm=BIG, tpm=600, window_seconds=W) <= W * 61 / 60


@pytest.mark.django_db
def test_the_window_forgets_slots_that_left_it():
    assert limits.acquire("p", requests=5, rpm=6, tpm=BIG, window_seconds=1) == 0
    time.sleep(1.1)
    assert limits.acquire("p", requests=6, rpm=6, tpm=BIG, window_seconds=1) == 0
    assert ProviderLimitState.objects.get(provider_key="p").window_requests == [6]


@pytest.mark.django_db
def test_wait_for_capacity_sleeps_until_granted():
    limits.acquire("p", requests=600, rpm=600, tpm=BIG, window_seconds=1)  # the whole quota
    started = time.monotonic()
    assert limits.wait_for_capacity("p", rpm=600, tpm=BIG, window_seconds=1) is True
    assert 0.9 < time.monotonic() - started < 1.6


@pytest.mark.django_db
def test_wait_for_capacity_gives_up_on_stop_or_when_the_wait_passes_the_timeout():
    limits.acquire("p", requests=6, rpm=6, tpm=BIG, window_seconds=10)  # the next request in 10 s
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    assert limits.wait_for_capacity("p", rpm=6, tpm=BIG, should_stop=stop.is_set, window_seconds=10) is False
    assert time.monotonic() - started < 0.3 + limits.STOP_CHECK_SECONDS + 0.2

    started = time.monotonic()
    assert limits.wait_for_capacity("p", rpm=6, tpm=BIG, timeout=5, window_seconds=10) is False
    assert time.monotonic() - started < 0.5  # no point sleeping 5 s for a 10 s wait
    assert limits.acquire("p", rpm=6, tpm=BIG, window_seconds=10) > 9  # giving up consumed nothing


def assert_no_window_exceeds(grants, per_grant, quota, window):
    """At most `quota` granted in any `window` seconds. Times are read after each statement
    returned, a few milliseconds after the database counted the grant, so windows are checked
    a little shorter than the quota's (two slots)."""
    span, first = window * 58 / 60, 0
    for last, at in enumerate(grants):
        while at - grants[first] >= span:
            first += 1
        assert (last - first + 1) * per_grant <= quota, (first, last)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "requests, tokens, rpm, tpm",
    [(1, 0, 120, BIG), (1, 100, BIG, 6000)],
    ids=["requests-per-minute", "tokens-per-minute"],
)
def test_the_quota_holds_across_two_processes(requests, tokens, rpm, tpm):
    per_grant, quota = (tokens, tpm) if tokens else (requests, rpm)
    ask = dict(requests=requests, tokens=tokens, rpm=rpm, tpm=tpm, window=1)
    grants = hammer_in_processes(2, key="shared", seconds=3, **ask)
    assert_no_window_exceeds(grants, per_grant, quota, window=1)
    assert len(grants) * per_grant > 2 * quota  # the window slid on: quota after quota was granted


# --- circuit breaker --------------------------------------------------------------------


@pytest.mark.django_db
def test_breaker_opens_at_the_threshold_and_refuses_while_open():
    assert limits.breaker_allows("p", recovery_seconds=60)  # never seen: closed
    assert limits.record_failure("p", "timeout", threshold=3) == "closed"
    limits.record_success("p")  # only consecutive failures count
    states = [limits.record_failure("p", f"503 #{n}", threshold=3) for n in range(3)]
    assert states == ["closed", "closed", "open"]
    assert not limits.breaker_allows("p", recovery_seconds=60)
    status = limits.breaker_state("p", recovery_seconds=60)
    assert (status.state, status.failures, status.last_error) == ("open", 3, "503 #2")
    assert 59 < status.seconds_until_trial <= 60
    assert limits.breaker_state("other", recovery_seconds=60).state == "closed"


@pytest.mark.django_db
def test_after_recovery_one_trial_closes_on_success_or_reopens_on_failure():
    limits.record_failure("p", "timeout", threshold=1)
    time.sleep(1.05)
    assert limits.breaker_allows("p", recovery_seconds=1)  # the trial
    assert not limits.breaker_allows("p", recovery_seconds=1)  # the trial is out
    assert limits.breaker_state("p", recovery_seconds=1).state == "half_open"
    limits.record_success("p")
    assert limits.breaker_state("p", recovery_seconds=1).failures == 0
    assert limits.breaker_allows("p", recovery_seconds=1) and limits.breaker_allows("p", recovery_seconds=1)

    limits.record_failure("p", "timeout", threshold=1)
    time.sleep(1.05)
    assert limits.breaker_allows("p", recovery_seconds=1)
    assert limits.record_failure("p", "still down", threshold=100) == "open"  # a failed trial reopens
    status = limits.breaker_state("p", recovery_seconds=1)
    assert status.seconds_until_trial > 0.9 and not limits.breaker_allows("p", recovery_seconds=1)


@pytest.mark.django_db
def test_a_trial_that_never_reports_back_is_replaced_after_the_recovery_time():
    limits.record_failure("p", "timeout", threshold=1)
    time.sleep(1.05)
    assert limits.breaker_allows("p", recovery_seconds=1)  # this trial's worker dies silently
    assert not limits.breaker_allows("p", recovery_seconds=1)
    time.sleep(1.05)
    assert limits.breaker_allows("p", recovery_seconds=1)  # a new trial
    assert not limits.breaker_allows("p", recovery_seconds=1)


@pytest.mark.django_db(transaction=True)
def test_exactly_one_of_many_racing_callers_gets_the_trial(sql):
    limits.record_failure("p", "timeout", threshold=1)
    sql("UPDATE embedding_provider_state SET opened_at = opened_at - interval '61 seconds'")
    callers = 16
    barrier, results = threading.Barrier(callers), []

    def call():
        try:
            connection.ensure_connection()  # each thread its own connection, opened before the start
            barrier.wait()
            results.append(limits.breaker_allows("p", recovery_seconds=60))
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * (callers - 1) + [True]


@pytest.mark.django_db
def test_admin_lists_provider_state_read_only(admin_client):
    limits.record_failure("https://api.example.com/v1", "HTTP 503", threshold=1)
    response = admin_client.get("/admin/queue_admin/providerlimitstate/")
    assert response.status_code == 200
    assert b"https://api.example.com/v1" in response.content and b"HTTP 503" in response.content
    assert admin_client.get("/admin/queue_admin/providerlimitstate/add/").status_code == 403
