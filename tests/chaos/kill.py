"""Suite 1, kill -9 chaos: worker processes (`qcluster` and `process_queue`) drain a backlog while
one of them, chosen at random, is killed with SIGKILL every ~2 s and started again; meanwhile
documents are edited and deleted. At the end every live document's chunks are its current text
by the configured model, deleted documents have no chunks, and no item is left processing,
waiting or dead-lettered. Duplicate provider work is counted at the fake server.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.chaos import rig
from tests.fault_server import FakeEmbedder, Fault


@dataclass(frozen=True)
class KillPlan:
    documents: int = 5000
    workers: tuple[str, ...] = ("qcluster", "process_queue", "process_queue")
    kill_every_seconds: float = 2.0  # on average; each gap is drawn from 0.5–1.5 times this
    edit_share: float = 0.10
    delete_share: float = 0.02
    lease_seconds: int = 10  # the smallest allowed: a killed worker's items come back soonest
    heartbeat_ms: int = 1000
    batch_size: int = 32  # the default: what a kill can cost at most
    # Lanes per worker (the requests_in_flight setting): a kill can cost up to two batches a lane.
    requests_in_flight: int = 1
    # Each answer takes this long, as a nearby embedding server's would: batches are in flight
    # when the kills come, and the backlog lasts long enough for many of them.
    provider_latency_seconds: float = 0.1
    seed: int = 7
    timeout_seconds: float = 900


LONG = KillPlan()
# Inside `make test`: 15–30 s. A lane claims its next batch while one is at the provider, which
# drains 1,200 documents at 0.1 s an answer in about 5 s, too soon for several kills; a slower
# provider keeps the backlog long enough for them.
SHORT = KillPlan(documents=1200, timeout_seconds=120, provider_latency_seconds=0.3)
# The same with three requests in flight per worker (an operator's setting for a remote API):
# three times the throughput, so a slower provider and more frequent kills keep the backlog
# long enough for several kills.
SHORT_LANES = KillPlan(
    documents=1200,
    timeout_seconds=120,
    requests_in_flight=3,
    provider_latency_seconds=0.4,
    kill_every_seconds=1.5,
)


def run(plan: KillPlan, log_dir: Path) -> dict:
    """Steps: settings; documents; workers; until the queue is drained (and every edit and
    delete made), kill one worker at random and restart it every ~2 s while editing and
    deleting documents in step with progress; stop the workers with SIGTERM; check the end
    state. Returns the figures; `problems` is empty when nothing was lost."""
    rig.set_queue_settings(
        batch_size=plan.batch_size,
        requests_in_flight=plan.requests_in_flight,
        lease_seconds=plan.lease_seconds,
        worker_heartbeat_interval_ms=plan.heartbeat_ms,
        max_concurrent_workers=sum(1 for kind in plan.workers if kind == "qcluster"),
        api_quota_per_minute=1_000_000,
        token_quota_per_minute=1_000_000_000,
    )
    rng = random.Random(plan.seed)
    with FakeEmbedder(dimensions=384) as fake:
        fake.policy = lambda request: Fault(sleep=plan.provider_latency_seconds)
        ids = rig.insert_documents(plan.documents, plan.seed)
        rig.insert_poisoned_documents()
        changed = rng.sample(ids, round(plan.documents * (plan.edit_share + plan.delete_share)))
        to_delete = changed[: round(plan.documents * plan.delete_share)]
        to_edit = changed[len(to_delete) :]
        workers = rig.Workers(list(plan.workers), rig.worker_environment(fake.openai_url), log_dir)
        started = time.monotonic()
        workers.start_all()
        edited = deleted = 0
        reconciler = rig.Reconciler()
        kills: list[tuple[float, str]] = []
        next_kill = started + rng.uniform(0.5, 1.5) * plan.kill_every_seconds
        try:
            while True:
                live = rig.live_items()
                # Edits and deletes keep pace with the backlog, all made by 80 % of it.
                share_done = 1.0 if live == 0 else min(1.0, max(0.0, 1 - live / plan.documents) / 0.8)
                edits_due, deletes_due = round(share_done * len(to_edit)), round(share_done * len(to_delete))
                edited += rig.edit_documents(to_edit[edited:edits_due], 1)
                deleted += rig.delete_documents(to_delete[deleted:deletes_due])
                reconciler.maybe_run()
                if live == 0 and edited == len(to_edit) and deleted == len(to_delete):
                    break
                now = time.monotonic()
                if now - started > plan.timeout_seconds:
                    raise TimeoutError(f"not drained after {plan.timeout_seconds:g} s: {rig.queue_counts()}")
                if now >= next_kill:
                    slot = rng.choice(workers.slots)
                    workers.kill(slot)
                    workers.start(slot)
                    kills.append((round(now - started, 2), slot.kind))
                    next_kill = now + rng.uniform(0.5, 1.5) * plan.kill_every_seconds
                time.sleep(0.1)
            drained_after = time.monotonic() - started
            stop_seconds = workers.terminate_all()
        except BaseException:
            workers.kill_all()
            raise
        requests = fake.snapshot()
    state = rig.end_state(to_delete)
    work = rig.provider_work(requests)
    completed_by = dict(
        rig.sql(
            """SELECT CASE WHEN worker_id LIKE %s THEN 'qcluster' ELSE 'process_queue' END, count(*)
                 FROM embedding_queue WHERE status = 'completed' GROUP BY 1""",
            ["%:drain:%"],
        )
    )
    reclaimed, most_attempts = rig.retried_items()
    return {
        "plan": asdict(plan),
        "seconds": round(drained_after, 1),
        "documents_per_second": round(plan.documents / drained_after, 1),
        "edited": edited,
        "deleted": deleted,
        "kills": len(kills),
        "duplicates_per_kill": round((work["inputs_sent"] - work["inputs_needed"]) / max(1, len(kills)), 1),
        "kills_by_kind": {kind: sum(1 for _, k in kills if k == kind) for kind in sorted(set(plan.workers))},
        "completed_by": completed_by,
        "items_taken_back_after_a_kill": reclaimed,
        "most_attempts_on_one_item": most_attempts,
        "stop_seconds_max": round(max(stop_seconds), 1),
        "tracebacks_in_worker_logs": workers.tracebacks(),
        "reconciliation": reconciler.figures(),
        "provider": work,
        "end_state": state,
        "problems": rig.problems(state),
    }
