"""Bad queue settings: every key × every wrong type and every value just
outside its range is refused by `config.set_value` (the path of the admin page, commands and
the shell) with a message naming the key, and nothing is stored or recorded. A value written
around Sidecar (psql) that the schema refuses never reaches the workers.

The settings page's own form errors are tested in tests/admin/test_admin_settings.py; environment
variables in tests/operations/test_settings_and_schema.py and below.
"""

import logging

import pytest
from django.core.exceptions import ValidationError

from queue_admin import config
from queue_admin.models import ConfigChange, QueueConfig
from tests import state
from tests.helpers import PRODUCTION_ENV, manage

pytestmark = pytest.mark.django_db

WRONG_TYPES = {
    "text": "32",
    "a decimal": 2.5,
    "true": True,
    "null": None,
    "a list": [1],
    "an object": {"value": 1},
    "huge": 10**30,
}
WRONG_TYPES_FOR_BOOL = {"text": "yes", "one": 1, "zero": 0, "null": None, "a list": [True]}


def cases():
    for key, item in config.SCHEMA.items():
        if item.kind is bool:
            for name, value in WRONG_TYPES_FOR_BOOL.items():
                yield key, name, value
        elif item.kind is int:
            for name, value in WRONG_TYPES.items():
                if name != "huge" or item.max_value < 10**30:
                    yield key, name, value
            yield key, "one below the minimum", item.min_value - 1
            yield key, "one above the maximum", item.max_value + 1
        else:  # priority weights
            good = dict(item.default)
            yield key, "a list", [3, 2, 1]
            yield key, "text", "high"
            yield key, "a key missing", {"high": 3, "medium": 2}
            yield key, "an extra key", {**good, "urgent": 9}
            yield key, "a weight as text", {**good, "low": "1"}
            yield key, "a weight that is true", {**good, "low": True}
            yield key, "a decimal weight", {**good, "low": 0.5}
            yield key, "a negative weight", {**good, "low": -1}
            yield key, "a weight over the maximum", {**good, "high": item.max_value + 1}
            yield key, "all weights zero", {priority: 0 for priority in good}


CASES = list(cases())


@pytest.mark.parametrize("key, what, value", CASES, ids=[f"{k}: {w}" for k, w, _ in CASES])
def test_every_wrong_type_and_range_is_refused_and_nothing_is_stored(key, what, value):
    before = state.fingerprint()
    with pytest.raises(ValidationError) as caught:
        config.set_value(key, value)
    message = " ".join(caught.value.messages)
    assert key in message and config.SCHEMA[key].allowed() in message
    assert state.changed_tables(before, state.fingerprint()) == []
    assert not ConfigChange.objects.exists()


def test_there_are_cases_for_every_key():
    assert {key for key, _, _ in CASES} == set(config.SCHEMA)
    assert len(CASES) >= 100


def test_the_boundaries_themselves_are_allowed():
    for key, item in config.SCHEMA.items():
        if item.kind is int:
            for value in (item.min_value, item.max_value):
                config.set_value(key, value)
                assert config.current().value(key) == value


@pytest.mark.parametrize(
    "key, stored",
    [
        ("batch_size", '"lots"'),
        ("lease_seconds", "-5"),
        ("queue_enabled", '"yes"'),
        ("priority_weights", "[3, 2, 1]"),
    ],
)
def test_a_value_written_around_sidecar_is_ignored_with_a_warning(key, stored, sql, caplog, admin_client):
    """psql can write anything into the table; the workers must not stop on it. They use the
    default, the log says why, and the settings page can still save a good value."""
    sql(
        "INSERT INTO embedding_queue_config (config_key, config_value, description, created_at, updated_at) "
        "VALUES (%s, %s::jsonb, '', now(), now()) "
        "ON CONFLICT (config_key) DO UPDATE SET config_value = excluded.config_value",
        [key, stored],
    )
    config.forget_cached()
    with caplog.at_level(logging.WARNING, logger="sidecar.config"):
        assert config.current().value(key) == config.SCHEMA[key].effective_default
    assert f"queue setting {key} is ignored" in caplog.text

    from tests.helpers import form_data

    if key == "batch_size":  # the page shows the default and saves over the bad value
        admin_client.post("/admin/queue_admin/queueconfig/", form_data(admin_client, batch_size="8"))
        assert QueueConfig.objects.get(config_key="batch_size").config_value == 8
        assert ConfigChange.objects.get().old_value == "lots"


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("LOGIN_FAILURE_LIMIT", "0", "LOGIN_FAILURE_LIMIT=0 is out of range"),
        ("LOGIN_LOCKOUT_MINUTES", "soon", "LOGIN_LOCKOUT_MINUTES must be a whole number"),
        ("EMBEDDING_MAX_DOCUMENT_CHARACTERS", "10", "EMBEDDING_MAX_DOCUMENT_CHARACTERS=10 is out of range"),
        ("EMBEDDING_BASE_URL", "file:///etc/passwd", "must be an http:// or https:// URL"),
        ("EMBEDDING_TIMEOUT_SECONDS", "-1", "EMBEDDING_TIMEOUT_SECONDS=-1 is out of range"),
        ("EMBEDDING_PROVIDER", "magic", "EMBEDDING_PROVIDER='magic' is not allowed"),
    ],
)
def test_bad_environment_settings_stop_start_up_with_the_fix(name, value, expected):
    env = {**PRODUCTION_ENV, name: value}
    if name == "EMBEDDING_BASE_URL":
        env |= {"EMBEDDING_PROVIDER": "openai", "EMBEDDING_MODEL": "m"}
    result = manage("check", env_overrides=env)
    assert result.returncode != 0
    assert expected in result.stderr
