"""Shared rate limits and circuit breaker per embedding provider, kept in PostgreSQL.

Every worker on every machine, and the admin, use the same `embedding_provider_state` row, so
they share one quota and one breaker. Each operation is one atomic statement: its row lock lasts
that statement only and there is no read-modify-write in Python, so concurrent workers can
neither overspend a quota nor both win the breaker's trial. Call these outside
`transaction.atomic()`, or the row lock is held until commit and every worker queues behind it.

Time is the database's `clock_timestamp()`, read once per statement; never a machine's clock
(workers' clocks disagree) nor `now()` (frozen at the start of the caller's transaction). A
statement that waited for the row lock holds a slightly old reading; it never writes into a
slot older than the newest one, which can only grant less.

**The quota is a sliding window**, as a provider counts it: at most `api_quota_per_minute`
requests and `token_quota_per_minute` tokens in *any* 60 seconds. The row keeps what was
granted in each of the last 61 one-second slots (any 60 s stretch of time overlaps at most 61
of them, so their sum bounds it). A full minute's quota may go at once after an idle spell;
then nothing more until the first grants leave the window. (A token bucket of one minute's
capacity refilled at the quota, which this replaces, lets a full bucket and a minute's refill
through in the same 60 s: twice the quota, as the fault-storm suite measured at the server.)

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

# Grants per slot of `window`/60 seconds, as three parallel arrays on the row (slot number,
# requests, tokens), kept for the last 61 slots only. An ask fits if what the window holds plus
# the ask stays within both quotas; an ask larger than a whole quota fits an empty window, so it
# is sent once and then blocks the window for a minute: the rate still holds on average.
# Refused, the wait is until enough of the oldest slots have left the window.
ACQUIRE = """
WITH clock AS (
    SELECT clock_timestamp() AS now, floor(extract(epoch FROM clock_timestamp()) / %(slot)s)::bigint AS slot
), state AS (
    SELECT s.id, s.window_slots, s.window_requests, s.window_tokens
      FROM embedding_provider_state s WHERE s.provider_key = %(key)s
       FOR UPDATE
), recent AS (
    SELECT w.slot, w.requests, w.tokens
      FROM state CROSS JOIN clock
     CROSS JOIN LATERAL unnest(state.window_slots, state.window_requests, state.window_tokens)
                        AS w(slot, requests, tokens)
     WHERE w.slot > clock.slot - 61
), used AS (
    SELECT coalesce(sum(requests), 0) AS requests, coalesce(sum(tokens), 0) AS tokens FROM recent
), leaving AS (
    -- what the window would still hold once this slot and every older one had left it
    SELECT r.slot, u.requests - sum(r.requests) OVER w AS requests, u.tokens - sum(r.tokens) OVER w AS tokens
      FROM recent r CROSS JOIN used u
    WINDOW w AS (ORDER BY r.slot)
), decision AS (
    SELECT CASE
           WHEN (u.requests = 0 OR u.requests + %(requests)s <= %(rpm)s)
                AND (u.tokens = 0 OR u.tokens + %(tokens)s <= %(tpm)s) THEN 0::float8
           ELSE greatest(0, ((SELECT min(l.slot) FROM leaving l
                               WHERE (l.requests = 0 OR l.requests + %(requests)s <= %(rpm)s)
                                 AND (l.tokens = 0 OR l.tokens + %(tokens)s <= %(tpm)s)) + 61) * %(slot)s
                            - extract(epoch FROM c.now))::float8
           END AS wait,
           greatest(c.slot, (SELECT max(slot) FROM recent)) AS slot, c.now
      FROM used u CROSS JOIN clock c
)
UPDATE embedding_provider_state s
   SET (window_slots, window_requests, window_tokens) = (
           SELECT coalesce(array_agg(k.slot ORDER BY k.slot), '{}'),
                  coalesce(array_agg(k.requests ORDER BY k.slot), '{}'),
                  coalesce(array_agg(k.tokens ORDER BY k.slot), '{}')
             FROM (SELECT g.slot, sum(g.requests)::bigint AS requests, sum(g.tokens)::bigint AS tokens
                     FROM (SELECT slot, requests, tokens FROM recent
                           UNION ALL
                           SELECT d.slot, %(requests)s, %(tokens)s WHERE d.wait = 0) g
                    GROUP BY g.slot) k),
       updated_at = d.now
  FROM state, decision d
 WHERE s.id = state.id
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

# Read-only: what each provider's window holds now (the last 61 one-second slots).
WINDOW_USE = """
SELECT s.provider_key,
       coalesce(sum(w.requests) FILTER (WHERE w.slot > c.slot - 61), 0),
       coalesce(sum(w.tokens) FILTER (WHERE w.slot > c.slot - 61), 0)
  FROM embedding_provider_state s
 CROSS JOIN (SELECT floor(extract(epoch FROM clock_timestamp()))::bigint AS slot) c
  LEFT JOIN LATERAL unnest(s.window_slots, s.window_requests, s.window_tokens) AS w(slot, requests, tokens) ON true
 GROUP BY s.provider_key
 ORDER BY s.provider_key
"""


@dataclass(frozen=True)
class QuotaUse:
    """What the sliding window holds: requests and tokens granted in the last minute, against
    the quotas (more than the quota only after an ask larger than a whole quota)."""

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


def acquire(
    provider_key: str, requests: int = 1, tokens: int = 0, *, rpm: int, tpm: int, window_seconds: float = 60
) -> float:
    """Take `requests` and `tokens` from the provider's shared quotas, before sending.

    Steps, in one UPDATE: sum what the last minute's slots granted; grant if the ask fits under
    both quotas (an ask larger than a whole quota fits only an empty window); record the grant
    in the current slot and drop slots older than the window. Returns 0.0 when granted (and
    recorded), else the seconds until it could be granted (nothing recorded).
    `window_seconds` is the quotas' period: a minute, except in tests that cannot wait one.
    """
    params = dict(
        key=provider_key, requests=int(requests), tokens=int(tokens), rpm=int(rpm), tpm=int(tpm),
        slot=window_seconds / 60,
    )  # fmt: skip
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
    window_seconds: float = 60,
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
    granted = retrying(
        acquire, provider_key, requests, tokens, rpm=rpm, tpm=tpm, window_seconds=window_seconds
    )
    return granted == 0


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


def breaker_is_closed(provider_key: str) -> bool:
    """Closed (or never seen)? Reads only: unlike `breaker_allows`, never starts a trial."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce((SELECT breaker_state = 'closed' FROM embedding_provider_state "
            "WHERE provider_key = %s), true)",
            [provider_key],
        )
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
    """Per provider row: requests and tokens granted in the last minute (its sliding window),
    against the quotas `rpm` and `tpm`. Reads; changes nothing."""
    with connection.cursor() as cursor:
        cursor.execute(WINDOW_USE)
        return {
            key: QuotaUse(float(requests), rpm, float(tokens), tpm)
            for key, requests, tokens in cursor.fetchall()
        }
