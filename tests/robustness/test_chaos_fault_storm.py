"""Suite 2, provider fault storm, short version: workers drain 400 documents through
an OpenAI-compatible server that answers 20 % 5xx, 10 % 429 with Retry-After, 5 % timeouts and
2 % malformed bodies, then drops every connection for 5 s, then recovers. `make chaos` runs it
with 2,000 documents and a 30 s outage (tests/chaos/storm.py)."""

import pytest

from tests.chaos import rig, storm

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_config"),
    pytest.mark.slow,
]


def test_a_fault_storm_and_an_outage_lose_nothing_and_keep_to_the_quota(tmp_path):
    rig.reset_database()
    plan = storm.SHORT
    result = storm.run(plan, tmp_path / "logs")

    assert result["problems"] == {}, result[
        "end_state"
    ]  # nothing dead-lettered but the poisoned, nothing stuck
    # Exactly one dead letter per document that failed, though reconciliation ran all along.
    assert result["end_state"]["dead_letters"] == rig.POISONED
    assert result["reconciliation"]["runs"] >= 3 and result["reconciliation"]["queued"] == 0, result
    assert set(result["faults_given"]) >= {"5xx", "429", "timeout", "outage", "ok"}, result["faults_given"]
    assert result["max_requests_in_any_60s"] <= plan.api_quota_per_minute
    # The breaker opened during the outage, and is closed again now.
    outage = result["outage"]
    assert outage["breaker_opened_after_seconds"] is not None, result["breaker_transitions"]
    assert outage["breaker_opened_after_seconds"] < plan.outage_seconds
    assert result["breaker_closed_at_end"]
    # No tight retry loop: once open, a trial per recovery period (plus what each worker had
    # already decided to send as it opened).
    assert outage["requests_after_breaker_opened"] <= outage["trials_possible"] + len(plan.workers), outage
    assert result["tracebacks_in_worker_logs"] == 0
