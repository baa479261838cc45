"""Suite 2, provider fault storm: workers drain a backlog through an OpenAI-compatible server on
loopback that fails at random (5xx, 429 with Retry-After, timeouts, malformed bodies), then
goes away altogether for a while, then comes back.

At the end, as in suite 1, every live document is embedded from its current text and nothing
is left waiting, processing or dead-lettered. Measured at the server: the most requests in any
sliding 60 s window (never above `api_quota_per_minute`), the requests sent during the outage
(only the breaker's half-open trials once it is open: no tight retry loops); and from the
database, the breaker's states over time (open during the outage, closed after).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.chaos import rig
from tests.fault_server import FakeEmbedder, Fault, ReceivedRequest

TIMEOUT_SECONDS = 2  # the workers' EMBEDDING_TIMEOUT_SECONDS; a "timeout" fault outlasts it


@dataclass(frozen=True)
class StormPlan:
    documents: int = 2000
    workers: tuple[str, ...] = ("qcluster", "process_queue", "process_queue")
    share_5xx: float = 0.20
    share_429: float = 0.10
    share_timeout: float = 0.05
    share_malformed: float = 0.02
    retry_after_seconds: int = 2
    outage_seconds: float = 30
    outage_after_share: float = 0.3  # the outage starts once this share of the backlog is done
    api_quota_per_minute: int = 120
    batch_size: int = 16
    breaker_threshold: int = 5
    breaker_recovery_seconds: int = 10
    provider_latency_seconds: float = 0.05
    seed: int = 7
    timeout_seconds: float = 900


LONG = StormPlan()
# Inside `make test`, about 30 s: a 5 s outage. A run shorter than a minute cannot show a
# per-minute quota binding (the long run does; tests/queue/test_limits.py and
# tests/providers/test_pipeline_http.py check the limiter itself), so here the quota only has to hold.
SHORT = StormPlan(documents=400, outage_seconds=5, breaker_recovery_seconds=2, timeout_seconds=120)


class StormPolicy:
    """The fault server's policy: during the outage every connection is dropped unanswered;
    otherwise a seeded draw picks a fault by the plan's shares, or a normal (slightly slow)
    answer. Remembers what each request got."""

    def __init__(self, plan: StormPlan):
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.lock = threading.Lock()
        self.outage = False
        self.given: list[tuple[float, str]] = []  # (arrival, fault name)

    def __call__(self, request: ReceivedRequest) -> Fault:
        plan = self.plan
        with self.lock:
            draw = self.rng.random()
            status_5xx = self.rng.choice((500, 502, 503))
            name, fault = self._choose(draw, status_5xx, plan)
            self.given.append((request.at, name))
        return fault

    def _choose(self, draw: float, status_5xx: int, plan: StormPlan) -> tuple[str, Fault]:
        if self.outage:
            return "outage", Fault(close_connection=True)
        for name, share, fault in (
            ("5xx", plan.share_5xx, Fault(status=status_5xx)),
            (
                "429",
                plan.share_429,
                Fault(status=429, headers={"Retry-After": str(plan.retry_after_seconds)}),
            ),
            ("timeout", plan.share_timeout, Fault(sleep=TIMEOUT_SECONDS + 1)),
            # A body cut short, as a proxy or a dying server sends it.
            ("malformed", plan.share_malformed, Fault(status=200, body='{"object": "list", "data": [{"emb')),
        ):
            if draw < share:
                return name, fault
            draw -= share
        return "ok", Fault(sleep=plan.provider_latency_seconds)


def max_in_window(times: list[float], window: float) -> int:
    """The most of `times` (sorted) that fall in any half-open interval of `window` seconds."""
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


def breaker_state() -> str:
    rows = rig.sql("SELECT breaker_state FROM embedding_provider_state WHERE provider_key = %s", [rig.MODEL])
    return rows[0][0] if rows else "closed"


def run(plan: StormPlan, log_dir: Path) -> dict:
    """Steps: settings; documents; workers; once `outage_after_share` of the backlog is done,
    the outage for `outage_seconds`; until the queue is drained, watch the breaker; stop the
    workers; check the end state and what the server saw."""
    rig.set_queue_settings(
        batch_size=plan.batch_size,
        api_quota_per_minute=plan.api_quota_per_minute,
        token_quota_per_minute=1_000_000_000,
        circuit_breaker_failure_threshold=plan.breaker_threshold,
        circuit_breaker_recovery_seconds=plan.breaker_recovery_seconds,
        max_concurrent_workers=sum(1 for kind in plan.workers if kind == "qcluster"),
        worker_heartbeat_interval_ms=1000,
    )
    policy = StormPolicy(plan)
    with FakeEmbedder(dimensions=384) as fake:
        fake.policy = policy
        rig.insert_documents(plan.documents, plan.seed)
        rig.insert_poisoned_documents()
        env = rig.worker_environment(
            fake.openai_url,
            EMBEDDING_BATCH_SIZE=str(plan.batch_size),
            EMBEDDING_TIMEOUT_SECONDS=str(TIMEOUT_SECONDS),
        )
        workers = rig.Workers(list(plan.workers), env, log_dir)
        started = time.monotonic()
        workers.start_all()
        outage_from = outage_until = None
        transitions: list[tuple[float, str]] = [(0.0, "closed")]
        reconciler = rig.Reconciler()
        try:
            while True:
                now = time.monotonic()
                live = rig.live_items()
                if outage_from is None and live <= plan.documents * (1 - plan.outage_after_share):
                    outage_from, policy.outage = now, True
                if (
                    outage_from is not None
                    and outage_until is None
                    and now - outage_from >= plan.outage_seconds
                ):
                    outage_until, policy.outage = now, False
                state = breaker_state()
                if state != transitions[-1][1]:
                    transitions.append((round(now - started, 2), state))
                reconciler.maybe_run()
                if live == 0 and outage_until is not None:
                    break
                if now - started > plan.timeout_seconds:
                    raise TimeoutError(f"not drained after {plan.timeout_seconds:g} s: {rig.queue_counts()}")
                time.sleep(0.1)
            drained_after = time.monotonic() - started
            workers.terminate_all()
        except BaseException:
            workers.kill_all()
            raise
        requests = fake.snapshot()
    state = rig.end_state([])
    retried, most_attempts = rig.retried_items()
    arrivals = sorted(request.at for request in requests)
    in_outage = [at for at in arrivals if outage_from <= at < outage_until]
    opened = [t for t, s in transitions if s == "open" and started + t >= outage_from]
    open_from = started + opened[0] if opened else outage_until
    trials = sum(1 for t, s in transitions if s == "half_open" and open_from <= started + t < outage_until)
    return {
        "plan": asdict(plan),
        "seconds": round(drained_after, 1),
        "faults_given": dict(Counter(name for _, name in policy.given)),
        "max_requests_in_any_60s": max_in_window(arrivals, 60.0),
        "quota_per_minute": plan.api_quota_per_minute,
        "max_requests_in_any_1s": max_in_window(arrivals, 1.0),
        "outage": {
            "seconds": round(outage_until - outage_from, 1),
            "requests": len(in_outage),
            "requests_after_breaker_opened": sum(1 for at in in_outage if at >= open_from),
            "breaker_opened_after_seconds": round(open_from - outage_from, 2) if opened else None,
            "half_open_trials_seen": trials,
            # one trial per recovery period while open: the most a breaker lets through
            "trials_possible": int((outage_until - open_from) // plan.breaker_recovery_seconds) + 1,
        },
        "items_retried": retried,
        "most_attempts_on_one_item": most_attempts,  # max_retries is 3: a fourth failure dead-letters
        "breaker_transitions": transitions,
        "breaker_closed_at_end": breaker_state() == "closed",
        "tracebacks_in_worker_logs": workers.tracebacks(),
        "reconciliation": reconciler.figures(),
        "provider": rig.provider_work(requests),
        "end_state": state,
        "problems": rig.problems(state),
    }
