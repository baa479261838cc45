"""Queue settings: seeded defaults, and every write validated against the typed schema."""

import pytest
from django.core.exceptions import ValidationError

from queue_admin import config
from queue_admin.models import QueueConfig

pytestmark = pytest.mark.django_db

# Every key but batch_size and requests_in_flight, whose defaults follow the provider: stored only
# once someone sets them.
SEED = {
    "queue_enabled": True,
    "max_concurrent_workers": 2,
    "max_retries": 3,
    "rate_limit_delay_ms": 1000,
    "worker_heartbeat_interval_ms": 30000,
    "lease_seconds": 300,
    "queue_cleanup_interval_hours": 24,
    "priority_weights": {"high": 3, "medium": 2, "low": 1},
    "api_quota_per_minute": 60,
    "token_quota_per_minute": 100000,
    "circuit_breaker_failure_threshold": 5,
    "circuit_breaker_recovery_seconds": 60,
    "batch_api_min_documents": 10_000,
}


def test_migration_seeds_every_key_with_its_default():
    assert dict(QueueConfig.objects.values_list("config_key", "config_value")) == SEED
    assert set(config.SCHEMA) - set(SEED) == {"batch_size", "requests_in_flight"}
    assert config.SCHEMA["batch_size"].by_provider and config.SCHEMA["requests_in_flight"].by_provider


BAD = [
    ("batch_size", "32", "a whole number from 1 to 1000"),
    ("batch_size", 0, "a whole number from 1 to 1000"),
    ("batch_size", 1001, "a whole number from 1 to 1000"),
    ("batch_size", True, "a whole number from 1 to 1000"),
    ("batch_size", 3.5, "a whole number from 1 to 1000"),
    ("queue_enabled", "yes", "true or false"),
    ("queue_enabled", 1, "true or false"),
    ("priority_weights", {"high": 3, "medium": 2}, "high, medium, low"),
    ("priority_weights", {"high": 3, "medium": 2, "low": -1}, "from 0 to 1000"),
    ("priority_weights", [3, 2, 1], "high, medium, low"),
    ("priority_weights", {"high": 0, "medium": 0, "low": 0}, "at least one above 0"),
    ("lease_seconds", None, "from 10 to 86400"),
]


@pytest.mark.parametrize("key, value, allowed", BAD)
def test_invalid_values_are_refused_naming_key_value_and_range(key, value, allowed):
    item, _ = QueueConfig.objects.get_or_create(
        config_key=key, defaults={"config_value": config.SCHEMA[key].effective_default}
    )
    before = item.config_value
    item.config_value = value
    with pytest.raises(ValidationError) as caught:
        item.save()
    message = " ".join(caught.value.messages)
    assert key in message and allowed in message and config.show_value(value) in message
    item.refresh_from_db()
    assert item.config_value == before


def test_unknown_key_is_refused():
    with pytest.raises(ValidationError, match="Unknown setting 'batchsize'"):
        QueueConfig.objects.create(config_key="batchsize", config_value=3)
    assert not QueueConfig.objects.filter(config_key="batchsize").exists()


def test_valid_value_is_saved():
    QueueConfig.objects.create(config_key="batch_size", config_value=1)
    assert QueueConfig.objects.get(config_key="batch_size").config_value == 1
