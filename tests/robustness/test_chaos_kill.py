"""Suite 1, kill -9 chaos, short version: `qcluster` and two `process_queue` workers
drain 1,200 documents while one of them is killed with SIGKILL every ~2 s and restarted, and
10 % of the documents are edited and 2 % deleted meanwhile. `make chaos` runs it with 5,000
(tests/chaos/kill.py)."""

import pytest

from tests.chaos import kill, rig

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_config"),
    pytest.mark.slow,
]


def test_workers_killed_every_two_seconds_lose_nothing(tmp_path):
    rig.reset_database()
    plan = kill.SHORT
    result = kill.run(plan, tmp_path / "logs")

    assert result["problems"] == {}, result["end_state"]  # every live document current, nothing stuck
    assert result["end_state"]["documents"] == plan.documents + rig.POISONED - result["deleted"]
    # Exactly one dead letter per document that failed, though reconciliation ran all along.
    assert result["end_state"]["dead_letters"] == rig.POISONED
    assert result["reconciliation"]["runs"] >= 3 and result["reconciliation"]["queued"] == 0, result
    assert (result["edited"], result["deleted"]) == (120, 24)
    assert result["kills"] >= 3, result  # the chaos did happen
    # A kill costs at most the batch the killed worker held: nothing else is sent twice.
    work = result["provider"]
    assert work["inputs_sent"] - work["inputs_needed"] <= result["kills"] * 32, work
    assert result["tracebacks_in_worker_logs"] == 0


def test_workers_with_three_requests_in_flight_killed_every_two_seconds_lose_nothing(tmp_path):
    """The same chaos with three lanes per worker: a kill now drops up to two batches a lane,
    all given back by their leases; nothing lost, nothing done twice beyond that."""
    rig.reset_database()
    plan = kill.SHORT_LANES
    result = kill.run(plan, tmp_path / "logs")

    assert result["problems"] == {}, result["end_state"]
    assert result["end_state"]["documents"] == plan.documents + rig.POISONED - result["deleted"]
    assert result["end_state"]["dead_letters"] == rig.POISONED
    assert result["kills"] >= 3, result
    work = result["provider"]
    assert (
        work["inputs_sent"] - work["inputs_needed"] <= result["kills"] * 32 * 2 * plan.requests_in_flight
    ), work
    assert result["tracebacks_in_worker_logs"] == 0
