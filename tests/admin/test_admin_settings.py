"""The queue settings editor: one page, typed fields, errors next to
the field with nothing saved, history of every change, and refusal of stale or tampered edits."""

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from queue_admin import config
from queue_admin.models import ConfigChange, QueueConfig
from tests.helpers import SETTINGS_URL as URL
from tests.helpers import form_data

pytestmark = pytest.mark.django_db


def stored():
    """What the workers read: the stored values over the defaults (a key that follows the
    provider has no row until someone sets it)."""
    config.forget_cached()
    return {**config.DEFAULTS, **dict(QueueConfig.objects.values_list("config_key", "config_value"))}


def errors_next_to_fields(html: str) -> dict[str, str]:
    return {
        name: re.sub(r"<[^>]+>", " ", body).strip()
        for name, body in re.findall(r'<ul class="errorlist" id="error-(\w+)">(.*?)</ul>', html, re.S)
    }


def test_the_page_lists_every_setting_with_label_help_default_and_range(admin_client):
    page = admin_client.get(URL).content.decode()
    for key, item in config.SCHEMA.items():
        assert f'id="setting-{key}"' in page, key
        assert str(item.label) in page and str(item.help_text).replace("'", "&#x27;") in page, key
        assert item.allowed_display in page, key
    assert 'type="checkbox" name="queue_enabled"' in page and "sidecar-switch" in page
    assert 'type="number" name="batch_size"' in page and 'min="1"' in page and 'max="1000"' in page
    for priority in ("high", "medium", "low"):
        assert f'name="priority_weights_{priority}"' in page
    assert "within 5 seconds" in page


@pytest.mark.parametrize(
    "field, typed, message",
    [
        ("batch_size", "lots", "Batch size: enter a whole number from 1 to 1,000."),
        ("batch_size", "-5", "Batch size: enter a whole number from 1 to 1,000."),
        ("batch_size", "", "Batch size: enter a whole number from 1 to 1,000."),
        ("batch_size", "2.5", "Batch size: enter a whole number from 1 to 1,000."),
        (
            "token_quota_per_minute",
            str(10**12),
            "Tokens per minute: enter a whole number from 1 to 1,000,000,000.",
        ),
        ("api_quota_per_minute", "1e12", "Requests per minute: enter a whole number from 1 to 1,000,000."),
        ("lease_seconds", "0x10", "Lease length: enter a whole number from 10 to 86,400."),
    ],
)
def test_an_invalid_value_is_refused_next_to_its_field_and_nothing_is_saved(
    admin_client, field, typed, message
):
    before = stored()
    # A valid change typed alongside must not be saved either: all or nothing.
    response = admin_client.post(URL, form_data(admin_client, **{field: typed, "max_retries": "7"}))
    assert response.status_code == 200
    html = response.content.decode()
    assert errors_next_to_fields(html) == {field: message}
    assert "Nothing was saved" in html
    assert stored() == before and not ConfigChange.objects.exists()


def test_priority_weights_that_are_all_zero_are_refused(admin_client):
    before = stored()
    zeros = {f"priority_weights_{p}": "0" for p in ("high", "medium", "low")}
    html = admin_client.post(URL, form_data(admin_client, **zeros)).content.decode()
    message = errors_next_to_fields(html)["priority_weights_high"]
    assert "Give at least one above 0" in message and "by age alone" in message
    assert "{" not in message and "priority_weights" not in message  # words, not the refused JSON
    assert stored() == before and not ConfigChange.objects.exists()


def test_a_valid_change_is_saved_recorded_and_shown_in_the_history(admin_client, admin_user):
    response = admin_client.post(
        URL,
        form_data(admin_client, batch_size="64", priority_weights_low="2", queue_enabled=None),
        follow=True,
    )
    html = response.content.decode()
    assert "Running workers pick up changes within 5 seconds" in html
    assert stored()["batch_size"] == 64
    assert stored()["priority_weights"] == {"high": 3, "medium": 2, "low": 2}
    assert stored()["queue_enabled"] is False
    changes = {c.config_key: (c.old_value, c.new_value, c.changed_by) for c in ConfigChange.objects.all()}
    assert changes == {
        "batch_size": (32, 64, admin_user),
        "priority_weights": (
            {"high": 3, "medium": 2, "low": 1},
            {"high": 3, "medium": 2, "low": 2},
            admin_user,
        ),
        "queue_enabled": (True, False, admin_user),
    }
    assert QueueConfig.objects.get(config_key="batch_size").updated_by == admin_user
    # The history on the page says who, what and old -> new.
    history = html[html.index('id="history"') :]
    assert "Batch size" in history and "<code>32 documents</code> → <code>64 documents</code>" in history
    assert admin_user.username in history
    # And the full history list shows it too.
    assert "Batch size" in admin_client.get("/admin/queue_admin/configchange/").content.decode()


def test_saving_an_untouched_page_changes_nothing(admin_client):
    response = admin_client.post(URL, form_data(admin_client), follow=True)
    assert "Nothing changed." in response.content.decode()
    assert not ConfigChange.objects.exists()


def test_an_edit_of_a_setting_someone_else_changed_meanwhile_is_refused(admin_client, admin_user):
    page_loaded_with = form_data(admin_client)
    config.set_value("batch_size", 100, user=admin_user)  # someone else, after the page loaded
    page_loaded_with["batch_size"] = "8"
    html = admin_client.post(URL, page_loaded_with, follow=True).content.decode()
    assert "Batch size changed since you opened this page" in html
    assert stored()["batch_size"] == 100
    assert ConfigChange.objects.count() == 1


def test_a_tampered_hidden_field_cannot_slip_a_change_past_the_check(admin_client):
    data = form_data(admin_client, batch_size="8")
    data["initial-batch_size"] = "not-a-number"
    html = admin_client.post(URL, data, follow=True).content.decode()
    assert "changed since you opened this page" in html
    assert stored()["batch_size"] == 32 and not ConfigChange.objects.exists()


def test_a_single_settings_change_page_leads_to_the_editor(admin_client):
    item = QueueConfig.objects.get(config_key="max_retries")
    response = admin_client.get(f"{URL}{item.pk}/change/")
    assert response.status_code == 302 and response["Location"] == URL


def test_people_who_may_only_view_see_the_values_but_cannot_save(db):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_queueconfig"))
    client = Client()
    client.force_login(viewer)
    html = client.get(URL).content.decode()
    assert "may view these settings but not change them" in html
    assert re.search(r'name="batch_size"[^>]*disabled', html)
    assert 'value="Save changes"' not in html
    assert client.post(URL, form_data(client, batch_size="8")).status_code == 403
    assert stored()["batch_size"] == 32


def test_queue_operators_may_change_settings(db):
    from django.contrib.auth.models import Group

    operator = User.objects.create_user("op", password="pw", is_staff=True)
    operator.groups.add(Group.objects.get(name="Queue operators"))
    client = Client()
    client.force_login(operator)
    client.post(URL, form_data(client, max_retries="5"))
    assert stored()["max_retries"] == 5
    assert ConfigChange.objects.get().changed_by == operator


def test_the_page_names_the_current_mode_and_shows_a_presets_changes_before_saving(admin_client):
    page = admin_client.get(URL).content.decode()
    assert '<strong id="current-preset">Custom</strong>' in page
    assert 'name="preview_preset" value="marathon"' in page and 'value="fast_track"' in page

    before = ConfigChange.objects.count()
    preview = admin_client.post(URL, {"preview_preset": "marathon"}).content.decode()
    assert ConfigChange.objects.count() == before  # nothing saved by looking
    assert "Batch size: <code>32 documents</code> → <code>1 documents</code>" in preview
    assert "Concurrent workers per machine: <code>2 workers</code> → <code>1 workers</code>" in preview
    assert 'name="apply_preset" value="marathon"' in preview

    applied = admin_client.post(
        URL, {"apply_preset": "marathon", "loaded_batch_size": "32", "loaded_max_concurrent_workers": "2"}
    )
    assert applied.status_code == 302
    assert stored()["batch_size"] == 1 and stored()["max_concurrent_workers"] == 1
    assert ConfigChange.objects.count() == before + 2
    page = admin_client.get(URL).content.decode()
    assert '<strong id="current-preset">Marathon</strong>' in page
    assert "Switched to Marathon. Batch size: 32 documents → 1 documents" in page


def test_a_preset_switch_over_someone_elses_change_saves_nothing(admin_client):
    config.set_value("batch_size", 10)
    response = admin_client.post(
        URL,
        {"apply_preset": "fast_track", "loaded_batch_size": "32", "loaded_max_concurrent_workers": "2"},
        follow=True,
    )
    assert "changed since you opened this page" in response.content.decode()
    assert stored()["batch_size"] == 10


def test_view_only_users_cannot_switch_modes(db):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_queueconfig"))
    client = Client()
    client.force_login(viewer)
    assert 'name="preview_preset"' not in client.get(URL).content.decode()
    assert client.post(URL, {"apply_preset": "marathon"}).status_code == 403
    assert stored()["batch_size"] == 32
