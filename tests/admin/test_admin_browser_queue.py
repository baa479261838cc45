"""The settings editor and the dead-letter list through a real browser (tests/browser.py)."""

import pytest

from documents.models import SourceDocument
from queue_admin.models import ConfigChange, QueueConfig, QueueItem, Worker
from tests.browser import docs_screenshot

pytestmark = pytest.mark.django_db(transaction=True)


def batch_size():
    """What the workers read (unset until someone saves it: the provider's default)."""
    from queue_admin import config

    config.forget_cached()
    return config.current().batch_size


def test_an_invalid_setting_is_refused_next_to_the_field_and_a_valid_one_is_saved_with_history(
    operator_page, operator, screenshot_dir
):
    page = operator_page
    page.goto("/admin/queue_admin/queueconfig/")
    page.fill("input[name=batch_size]", "-5")
    page.fill("input[name=token_quota_per_minute]", "1000000000000")
    page.click("input[value='Save changes']")
    assert page.inner_text("#error-batch_size") == "Batch size: enter a whole number from 1 to 1,000."
    assert "1,000,000,000" in page.inner_text("#error-token_quota_per_minute")
    assert "Nothing was saved" in page.inner_text(".messagelist")
    assert batch_size() == 32 and not ConfigChange.objects.exists()

    page.goto("/admin/queue_admin/queueconfig/")
    page.fill("input[name=batch_size]", "64")
    page.click("input.sidecar-switch")  # pause the queue with the switch
    page.click("input[value='Save changes']")
    message = page.inner_text(".messagelist")
    assert (
        "Batch size: 32 documents → 64 documents" in message
        and "Queue enabled: on → off" in message
        and "within 5 seconds" in message
    )
    assert batch_size() == 64
    assert QueueConfig.objects.get(config_key="queue_enabled").config_value is False
    history = page.inner_text(".sidecar-history")
    assert (
        "Batch size" in history and "32 documents → 64 documents" in history and operator.username in history
    )
    page.screenshot(path=str(screenshot_dir / "config.png"), full_page=True)
    docs_screenshot(page, "settings")


def test_an_operator_retries_a_dead_letter(operator_page):
    document = SourceDocument.objects.create(title="Poison pill", content="text the provider refused")
    QueueItem.objects.filter(document=document).update(
        status="failed", retry_count=3, error_kind="permanent", error_message="HTTP 400: input too long"
    )
    page = operator_page
    page.goto("/admin/queue_admin/deadletter/")
    assert "HTTP 400: input too long" in page.inner_text("#result_list")
    docs_screenshot(page, "dead-letters")
    page.check("#result_list input.action-select")
    page.select_option("select[name=action]", "retry")
    page.click("button[name=index]")
    # A permanent error on text nobody changed since: a warning first, naming why it failed.
    assert "will most likely fail the same way" in page.inner_text("#retry-warning")
    assert "HTTP 400: input too long" in page.inner_text("#retry-doomed")
    page.click("button[name=permanent][value=all]")
    assert "Retried 1 item." in page.inner_text(".messagelist")
    assert "See them in the queue" in page.inner_text(".messagelist")
    item = QueueItem.objects.get(document=document)
    assert (item.status, item.retry_count, item.error_message) == ("pending", 0, "")
    assert "Poison pill" not in page.inner_text("#content")  # gone from the dead letters


def test_the_workers_page_lists_each_worker_with_its_host_and_counts(operator_page):
    Worker.objects.create(
        worker_id="web-1:4101:drain-a", hostname="web-1", pid=4101, status="active", tasks_processed=1280
    )
    Worker.objects.create(
        worker_id="web-2:5230:drain-b", hostname="web-2", pid=5230, status="idle", tasks_processed=960
    )
    page = operator_page
    page.goto("/admin/queue_admin/worker/")
    workers = page.inner_text("#result_list")
    assert "web-1:4101:drain-a" in workers and "web-2:5230:drain-b" in workers
    docs_screenshot(page, "workers")


def test_an_operator_switches_to_marathon_after_seeing_what_it_changes(operator_page, operator):
    """The mode preset by mouse: the preview lists each setting it changes, nothing is saved
    until the switch, then the settings page and the dashboard both say Marathon."""
    page = operator_page
    page.goto("/admin/queue_admin/queueconfig/")
    assert page.inner_text("#current-preset") == "Custom"
    page.click("button[value=marathon]")
    preview = page.inner_text("#preset-preview")
    assert "Batch size: 32 documents → 1 documents" in preview
    assert "Concurrent workers per machine: 2 workers → 1 workers" in preview
    assert batch_size() == 32 and not ConfigChange.objects.exists()  # a preview saves nothing

    page.click("button[name=apply_preset]")
    assert "Switched to Marathon" in page.inner_text(".messagelist")
    assert page.inner_text("#current-preset") == "Marathon"
    assert batch_size() == 1
    assert {change.changed_by for change in ConfigChange.objects.all()} == {operator}
    page.goto("/admin/")
    assert page.inner_text("#sidecar-queue-mode") == "Marathon"
