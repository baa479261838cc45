"""The queue's modes: Marathon and Fast-track set their settings in one validated, recorded
change, and `current_preset` says which one the queue is in, or 'custom'."""

import pytest
from django.core.exceptions import ValidationError

from queue_admin import config
from queue_admin.models import ConfigChange

pytestmark = pytest.mark.django_db


def test_the_defaults_are_custom_and_each_preset_is_recognised_once_applied():
    assert config.current_preset() == "custom"  # batch 32, 2 workers: neither mode
    config.apply_preset("marathon", loaded={"batch_size": 32, "max_concurrent_workers": 2})
    assert config.current().batch_size == 1 and config.current().max_concurrent_workers == 1
    assert config.current_preset() == "marathon"
    fast = config.presets()["fast_track"].values
    config.apply_preset("fast_track", loaded={"batch_size": 1, "max_concurrent_workers": 1})
    assert config.current().batch_size == fast["batch_size"] == 64
    assert config.current_preset() == "fast_track"
    config.set_value("batch_size", 63)
    assert config.current_preset() == "custom"


def test_fast_track_uses_every_cluster_worker_but_the_schedules_one(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 8}
    assert config.presets()["fast_track"].values["max_concurrent_workers"] == 7
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 1}
    assert config.presets()["fast_track"].values["max_concurrent_workers"] == 1


def test_a_switch_is_recorded_setting_by_setting_with_who_and_old_values(admin_user):
    before = ConfigChange.objects.count()
    changes = config.apply_preset(
        "marathon", loaded={"batch_size": 32, "max_concurrent_workers": 2}, user=admin_user
    )
    assert {(c.config_key, c.old_value, c.new_value) for c in changes} == {
        ("batch_size", 32, 1),
        ("max_concurrent_workers", 2, 1),
    }
    assert ConfigChange.objects.count() == before + 2
    assert {c.changed_by for c in changes} == {admin_user}


def test_preset_changes_lists_only_what_would_change():
    config.set_value("max_concurrent_workers", 1)
    assert [(s.key, now, then) for s, now, then in config.preset_changes("marathon")] == [
        ("batch_size", 32, 1)
    ]


def test_a_setting_changed_since_the_page_loaded_refuses_the_whole_switch():
    config.set_value("batch_size", 10)  # someone else, after the person opened the page
    with pytest.raises(config.ConcurrentChange):
        config.apply_preset("marathon", loaded={"batch_size": 32, "max_concurrent_workers": 2})
    assert config.current().batch_size == 10 and config.current().max_concurrent_workers == 2


def test_an_unknown_preset_is_refused():
    with pytest.raises(ValidationError, match="no mode called"):
        config.apply_preset("turbo", loaded={})
