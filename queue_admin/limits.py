"""Shared rate limits and circuit breaker per embedding provider, kept in PostgreSQL.

Every worker on every machine, and the admin, use the same `embedding_provider_state` row, so
they share one quota and one breaker. Each operation is one atomic statement: its row lock lasts
that statement only and there is no read-modify-write in Python, so concurrent workers can
neither overspend a bucket nor both win the breaker's trial. Call these outside
`transaction.atomic()`, or the row lock is held until commit and every worker queues behind it.

Time is the database's `clock_timestamp()`, read once per statement; never a machine's clock
(workers' clocks disagree) nor `now()` (frozen at the start of the caller's transaction). A
statement that waited for the row lock holds a slightly old reading; `greatest(refilled_at,
clock)` keeps time from running backwards, which can only grant less.

Callers pass the limits from the queue settings (`api_quota_per_minute`,
`token_quota_per_minute`, `circuit_breaker_failure_threshold`,
`circuit_breaker_recovery_seconds`), so a changed setting applies at the next call.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from tenacity import Retrying, retry_if_result, stop_before_delay, stop_never, wait_random

# How often a sleeping `wait_for_capacity` checks `should_stop`: the longest a stopping worker
# waits. Jitter spreads workers that were all told the same wait, so they don't wake together.
STOP_CHECK_SECONDS = 0.25
JITTER_SECONDS = 0.05

ENSURE_ROW = """
INSERT INTO embedding_provider_state (provider_key) VALUES (%(key)s) ON CONFLICT (provider_key) DO NOTHING
"""

# Two token buckets on one row: capacity = the per-minute quota, refilled continuously at
# quota/60 per second. Refused requests write the refilled level back, which changes nothing
# (refilling is the same either way) and keeps the statement a single UPDATE.
ACQUIRE = """
WITH clock AS (SELECT clock_timestamp() AS now),
bucket AS (
    SELECT s.id, greatest(s.refilled_at, clock.now) AS refilled_at,
           least(%(rpm)s, coalesce(s.requests_available, %(rpm)s) + %(rpm)s * e.minutes) AS requests,
           least(%(tpm)s, coalesce(s.tokens_available, %(tpm)s) + %(tpm)s * e.minutes) AS tokens
      FROM embedding_provider_state s CROSS JOIN clock
     CROSS JOIN LATERAL (SELECT greatest(0, extract(epoch FROM clock.now - s.refilled_at)::float8 / 60)
                                AS minutes) e
     WHERE s.provider_key = %(key)s
       FOR UPDATE OF s
), decision AS (
    -- Seconds until both buckets hold what is asked, or a full bucket for an oversized ask.
    SELECT bucket.*, greatest(0, (least(%(requests)s, %(rpm)s) - requests) * 60 / %(rpm)s,
                                 (least(%(tokens)s, %(tpm)s) - tokens) * 60 / %(tpm)s) AS wait
      FROM bucket
)
UPDATE embedding_provider_state s
   SET requests_available = d.requests - CASE WHEN d.wait = 0 THEN %(requests)s ELSE 0 END,
       tokens_available = d.tokens - CASE WHEN d.wait = 0 THEN %(tokens)s ELSE 0 END,
       refilled_at = d.refilled_at, updated_at = d.refilled_at
  FROM decision d
 WHERE s.id = d.id
RETURNING d.wait
"""

# Concurrent callers all try the UPDATE; the first takes the row lock and moves it to
# half_open. The others wait for that lock, then PostgreSQL re-checks the WHERE against the
# new row (half_open, trial just started), which no longer matches: exactly one trial. The
# SELECT reads the row as it was when the statement began; no row means closed.
BREAKER_ALLOWS = """
WITH clock AS (SELECT clock_timestamp() AS now),
trial AS (
    UPDATE embedding_provider_state s
       SET breaker_state = 'half_open', trial_started_at = clock.now, updated_at = clock.now
      FROM clock
     WHERE s.provider_key = %(key)s
       AND ((s.breaker_state = 'open' AND s.opened_at <= clock.now - make_interval(secs => %(recovery)s))
            -- a trial that never reported back (worker killed) must not wedge the breaker
            OR (s.breaker_state = 'half_open'
                AND s.trial_started_at <= clock.now - make_interval(secs => %(recovery)s)))
    RETURNING 1
)
SELECT EXISTS (SELECT FROM trial)
       OR coalesce((SELECT breaker_state = 'closed' FROM embedding_provider_state
                     WHERE provider_key = %(key)s), true)
"""

# An open breaker keeps its opened_at: failures of requests sent before it opened must not
# postpone the trial.
RECORD_FAILURE = """
WITH clock AS (SELECT clock_timestamp() AS now)
UPDATE embedding_provider_state s
   SET consecutive_failures = s.consecutive_failures + 1,
       breaker_state = CASE WHEN s.breaker_state = 'half_open' OR s.consecutive_failures + 1 >= %(threshold)s
                            THEN 'open' ELSE s.breaker_state END,
       opened_at = CASE WHEN s.breaker_state = 'open' THEN s.opened_at
                        WHEN s.breaker_state = 'half_open' OR s.consecutive_failures + 1 >= %(threshold)s
                        THEN clock.now END,
       trial_started_at = NULL, last_error = left(%(message)s, 4000), last_failure_at = clock.now,
       updated_at = clock.now
  FROM clock
 WHERE s.provider_key = %(key)s
RETURNING s.breaker_state
"""

# The WHERE skips the write when nothing changes: success is the hot path.
RECORD_SUCCESS = """
UPDATE embedding_provider_state
   SET breaker_state = 'closed', consecutive_failures = 0, opened_at = NULL, trial_started_at = NULL,
       updated_at = clock_timestamp()
 WHERE provider_key = %(key)s AND (breaker_state <> 'closed' OR consecutive_failures > 0)
"""

BREAKER_STATE = """
SELECT breaker_state, consecutive_failures, opened_at, last_error, last_failure_at,
       CASE WHEN breaker_state <> 'closed' THEN greatest(0, extract(epoch FROM
           CASE breaker_state WHEN 'open' THEN opened_at ELSE trial_started_at END
           + make_interval(secs => %(recovery)s) - clock_timestamp()))::float8 END
  FROM embedding_provider_state WHERE provider_key = %(key)s
"""

# Read-only: each bucket's level now, refilled as ACQUIRE would refill it, for every provider.
BUCKET_LEVELS = """
SELECT s.provider_key,
       least(%(rpm)s, coalesce(s.requests_available, %(rpm)s) + %(rpm)s * e.minutes),
       least(%(tpm)s, coalesce(s.tokens_available, %(tpm)s) + %(tpm)s * e.minutes)
  FROM embedding_provider_state s
 CROSS JOIN LATERAL (SELECT greatest(0, extract(epoch FROM clock_timestamp() - s.refilled_at)::float8 / 60)
                            AS minutes) e
 ORDER BY s.provider_key
"""


@dataclass(frozen=True)
class QuotaUse:
    """What the last minute's sending has taken from the buckets: a full bucket is 0 used, an
    empty one the whole quota, one in debt (an oversized request) more than the quota."""

    requests_used: float
    requests_quota: int
    tokens_used: float
    tokens_quota: int


@dataclass(frozen=True)
class BreakerStatus:
    state: str  # closed, open or half_open
    failures: int  # consecutive
    opened_at: datetime | None
    last_error: str
    last_failure_at: datetime | None
    # open: until the trial is allowed; half_open: until a silent trial is given up; closed: None
    seconds_until_trial: float | None


def _update_row(statement: str, params: dict):
    """Run a one-row statement; if the provider has no row yet, create it and run it again."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone()
        if row is None:
            cursor.execute(ENSURE_ROW, params)
            cursor.execute(statement, params)
            row = cursor.fetchone()
    return row


def acquire(provider_key: str, requests: int = 1, tokens: int = 0, *, rpm: int, tpm: int) -> float:
    """Take `requests` and `tokens` from the provider's shared buckets, before sending.

    Steps, in one UPDATE: refill both buckets for the time since the last call (capped at a
    full minute's quota), then grant if both hold enough. An ask larger than a whole bucket
    (tokens > tpm) would never fit, so it is granted once the bucket is full and leaves the
    bucket in debt: later requests wait until the debt is repaid, so the rate still holds.
    Returns 0.0 when granted (and consumed), else the seconds to wait before it could be
    granted (nothing consumed).
    """
    params = dict(key=provider_key, requests=requests, tokens=tokens, rpm=float(rpm), tpm=float(tpm))
    return float(_update_row(ACQUIRE, params)[0])


def wait_for_capacity(
    provider_key: str,
    requests: int = 1,
    tokens: int = 0,
    *,
    rpm: int,
    tpm: int,
    should_stop: Callable[[], bool] = lambda: False,
    timeout: float | None = None,
) -> bool:
    """Block until `acquire` grants the request, or give up.

    Steps: acquire; if refused, sleep the wait it returned (plus jitter) in naps of at most
    STOP_CHECK_SECONDS that check `should_stop`; try again. Gives up when `should_stop()` is
    true, or at once when the next wait would end past `timeout` seconds from the start.
    Returns True when granted (and consumed), False when it gave up (nothing consumed).
    """

    def nap(seconds: float) -> None:
        until = time.monotonic() + seconds
        while not should_stop() and (left := until - time.monotonic()) > 0:
            time.sleep(min(left, STOP_CHECK_SECONDS))

    retrying = Retrying(
        retry=retry_if_result(lambda wait: wait > 0),
        wait=wait_random(0, JITTER_SECONDS) + (lambda state: state.outcome.result()),
        stop=(stop_never if timeout is None else stop_before_delay(timeout)) | (lambda state: should_stop()),
        sleep=nap,
        retry_error_callback=lambda state: state.outcome.result(),  # the last wait: not granted
    )
    return retrying(acquire, provider_key, requests, tokens, rpm=rpm, tpm=tpm) == 0


def breaker_allows(provider_key: str, *, recovery_seconds: int) -> bool:
    """May a request go to this provider now?

    Returns True when closed (or never seen); when open and `recovery_seconds` have passed
    since it opened, moves it to half_open and returns True to exactly one caller, the trial,
    who must report with `record_success` or `record_failure`. False to everyone else while
    open or while the trial is out; a trial silent for `recovery_seconds` is replaced.
    """
    with connection.cursor() as cursor:
        cursor.execute(BREAKER_ALLOWS, {"key": provider_key, "recovery": recovery_seconds})
        return cursor.fetchone()[0]


def record_success(provider_key: str) -> None:
    """The provider answered (a result, a 4xx, a 429: it is up): close the breaker, count 0."""
    with connection.cursor() as cursor:
        cursor.execute(RECORD_SUCCESS, {"key": provider_key})


def record_failure(provider_key: str, message: str, *, threshold: int) -> str:
    """Count a *transient* provider failure: timeout, connection error, 5xx. The caller
    classifies; anything else the provider answered (4xx, 429) shows it is up and goes to
    `record_success`, or a trial ending that way would leave the breaker half-open.

    Steps, in one UPDATE: failures + 1 and keep the message; open the breaker (opened_at =
    now) when the count reaches `threshold` or the half-open trial failed. Returns the new state.
    """
    params = {"key": provider_key, "message": message, "threshold": threshold}
    return _update_row(RECORD_FAILURE, params)[0]


def breaker_state(provider_key: str, *, recovery_seconds: int) -> BreakerStatus:
    """The breaker as the admin and dashboard show it; a provider never seen is closed."""
    with connection.cursor() as cursor:
        cursor.execute(BREAKER_STATE, {"key": provider_key, "recovery": recovery_seconds})
        row = cursor.fetchone()
    return BreakerStatus(*row) if row else BreakerStatus("closed", 0, None, "", None, None)


def quota_use(*, rpm: int, tpm: int) -> dict[str, QuotaUse]:
    """Per provider row: quota taken from its buckets (quota minus what is available now,
    refilled to this instant), against the quotas `rpm` and `tpm`. Reads; changes nothing."""
    with connection.cursor() as cursor:
        cursor.execute(BUCKET_LEVELS, {"rpm": float(rpm), "tpm": float(tpm)})
        return {
            key: QuotaUse(max(0.0, rpm - requests), rpm, max(0.0, tpm - tokens), tpm)
            for key, requests, tokens in cursor.fetchall()
        }
