"""Suite 4, graceful shutdown: SIGTERM to `qcluster` while its drains are in the middle of
batches, over and over; then one last cluster drains what is left.

Each stop must end with nothing `processing` within a few seconds — the request in flight is
answered and written, the batch's unsent texts are given back — far sooner than the lease
(`lease_seconds` is 300 here), and the process must exit. Nothing is taken back by lease
expiry (no item has a retry counted), and no text is sent twice: a graceful stop wastes no
provider work. The signal goes to the main process only (`docker stop`) or to every process of
the cluster (systemd's default, a terminal's Ctrl-C), by turns.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from tests.chaos import rig
from tests.fault_server import FakeEmbedder, Fault

LEASE_SECONDS = 300


@dataclass(frozen=True)
class ShutdownPlan:
    documents: int = 1000
    cycles: int = 10
    drains: int = 2
    batch_size: int = 16  # documents a drain claims at once
    request_size: int = 4  # texts per provider request: a batch is four requests in a row
    provider_latency_seconds: float = 0.5
    seed: int = 7
    release_limit_seconds: float = 5.0  # "within a few seconds"
    timeout_seconds: float = 600


LONG = ShutdownPlan()
SHORT = ShutdownPlan(documents=200, cycles=2)  # inside `make test`: about 20 s


def processing_by_worker() -> dict[str, int]:
    return dict(
        rig.sql("SELECT worker_id, count(*) FROM embedding_queue WHERE status = 'processing' GROUP BY 1")
    )


def drains_busy(drains: int, fake: FakeEmbedder, requests_at_least: int) -> bool:
    """Every drain holds a batch, and requests are flowing."""
    return len(processing_by_worker()) >= drains and fake.count() >= requests_at_least


def stop_cluster(workers: rig.Workers, slot: rig.Slot, whole_group: bool) -> tuple[float, float]:
    """SIGTERM, then (seconds until nothing is processing, seconds until the cluster exited)."""
    sent = time.monotonic()
    if whole_group:
        os.killpg(slot.process.pid, signal.SIGTERM)
    else:
        slot.process.send_signal(signal.SIGTERM)
    released = None
    while slot.process.poll() is None or released is None:
        if released is None and not processing_by_worker():
            released = time.monotonic() - sent
        if time.monotonic() - sent > 60:
            break
        time.sleep(0.05)
    exited = time.monotonic() - sent
    workers.terminate(slot, timeout=5)  # reaps it (or kills a tree that would not end)
    return (released if released is not None else float("inf")), exited


def run(plan: ShutdownPlan, log_dir: Path) -> dict:
    """Steps: settings; documents; `cycles` times: start a cluster, wait until every drain holds
    a batch and requests are flowing, SIGTERM it mid-request, measure; then a last cluster
    drains the rest; check the end state and what the server saw."""
    rig.set_queue_settings(
        batch_size=plan.batch_size,
        max_concurrent_workers=plan.drains,
        lease_seconds=LEASE_SECONDS,
        worker_heartbeat_interval_ms=1000,
        api_quota_per_minute=1_000_000,
        token_quota_per_minute=1_000_000_000,
    )
    rng = random.Random(plan.seed)
    cycles = []
    with FakeEmbedder(dimensions=384) as fake:
        fake.policy = lambda request: Fault(sleep=plan.provider_latency_seconds)
        rig.insert_documents(plan.documents, plan.seed)
        rig.insert_poisoned_documents()
        env = rig.worker_environment(
            fake.openai_url, EMBEDDING_BATCH_SIZE=str(plan.request_size), Q_WORKERS=str(plan.drains + 1)
        )
        workers = rig.Workers(["qcluster"], env, log_dir)
        (slot,) = workers.slots
        started = time.monotonic()
        try:
            for cycle in range(plan.cycles):
                workers.start(slot)
                rig.wait_until(
                    partial(drains_busy, plan.drains, fake, fake.count() + 2),
                    60,
                    "every drain to hold a batch",
                    0.05,
                )
                time.sleep(rng.uniform(0, plan.provider_latency_seconds))  # somewhere inside a request
                held = sum(processing_by_worker().values())
                completed_before = rig.queue_counts().get("completed", 0)
                whole_group = cycle % 2 == 1
                released, exited = stop_cluster(workers, slot, whole_group)
                counts = rig.queue_counts()
                cycles.append(
                    {
                        "signal_to": "every process" if whole_group else "main process",
                        "processing_at_signal": held,
                        "finished_after_signal": counts.get("completed", 0) - completed_before,
                        "seconds_until_none_processing": round(released, 2),
                        "seconds_until_exit": round(exited, 2),
                        "processing_after_exit": counts.get("processing", 0),
                    }
                )
            workers.start(slot)
            rig.wait_until(lambda: rig.live_items() == 0, plan.timeout_seconds, "the last cluster to drain")
            stop_cluster(workers, slot, whole_group=False)
            seconds = time.monotonic() - started
        except BaseException:
            workers.kill_all()
            raise
        requests = fake.snapshot()
    state = rig.end_state([])
    taken_back, _ = rig.retried_items()
    return {
        "plan": asdict(plan),
        "seconds": round(seconds, 1),
        "lease_seconds": LEASE_SECONDS,
        "cycles": cycles,
        "max_seconds_until_none_processing": max(c["seconds_until_none_processing"] for c in cycles),
        "max_seconds_until_exit": max(c["seconds_until_exit"] for c in cycles),
        "items_taken_back_by_lease_expiry": taken_back,
        "tracebacks_in_worker_logs": workers.tracebacks(),
        "provider": rig.provider_work(requests),
        "end_state": state,
        "problems": rig.problems(state),
    }
