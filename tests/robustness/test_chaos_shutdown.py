"""Suite 4, graceful shutdown, short version: SIGTERM to `qcluster` while both its
drains are in the middle of batches — once to the main process (`docker stop`), once to every
process of the cluster (systemd) — then a last cluster drains the rest. `make chaos` stops it
ten times over 1,000 documents (tests/chaos/shutdown.py)."""

import pytest

from tests.chaos import rig, shutdown

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_config"),
    pytest.mark.slow,
]


def test_sigterm_mid_batch_gives_work_back_at_once_and_wastes_nothing(tmp_path):
    rig.reset_database()
    plan = shutdown.SHORT
    result = shutdown.run(plan, tmp_path / "logs")

    assert result["problems"] == {}, result["end_state"]
    assert result["end_state"]["dead_letters"] == rig.POISONED  # one per document that failed
    for cycle in result["cycles"]:
        assert cycle["processing_at_signal"] > 0, cycle  # it was stopped mid-batch
        # The request in flight is written, the rest of the batch goes back: within seconds,
        # not when the 300 s lease runs out.
        assert cycle["seconds_until_none_processing"] <= plan.release_limit_seconds, cycle
        assert cycle["seconds_until_exit"] <= 15, cycle
        assert cycle["processing_after_exit"] == 0, cycle
    assert {cycle["signal_to"] for cycle in result["cycles"]} == {"main process", "every process"}
    assert result["items_taken_back_by_lease_expiry"] == 0
    assert result["provider"]["inputs_sent"] == result["provider"]["inputs_needed"]  # nothing sent twice
    assert result["tracebacks_in_worker_logs"] == 0
