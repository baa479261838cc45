"""The queue dashboard in a real browser (tests/browser.py): what an operator sees and presses."""

import pytest
from django.db.models import Count

from documents.models import SourceDocument
from queue_admin import config
from queue_admin.models import ConfigChange, QueueItem
from tests.browser import docs_screenshot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queued(seeded_config, sql):
    """Documents queued by the trigger, some moved to other states and priorities."""
    SourceDocument.objects.bulk_create(SourceDocument(content=f"browser doc {n}") for n in range(9))
    sql("UPDATE embedding_queue SET priority = 'high' WHERE id IN (SELECT id FROM embedding_queue LIMIT 2)")
    sql(
        """UPDATE embedding_queue SET status = 'failed', priority = 'low', error_kind = 'permanent',
                  error_message = 'HTTP 400: input too long' WHERE id IN (
               SELECT id FROM embedding_queue WHERE priority = 'medium' LIMIT 3)"""
    )
    sql(
        """UPDATE embedding_queue SET status = 'completed', processing_started_at = now() - interval '2 minutes',
                  processing_completed_at = now() - interval '1 minute' WHERE id IN (
               SELECT id FROM embedding_queue WHERE priority = 'medium' LIMIT 2)"""
    )


def database_counts() -> dict:
    rows = QueueItem.objects.order_by().values_list("status", "priority").annotate(n=Count("*"))
    return {(status, priority): n for status, priority, n in rows}


def cell(page, status, priority) -> str:
    return page.inner_text(f'td[data-status="{status}"][data-priority="{priority}"]').strip()


def test_an_operator_sees_the_counts_pauses_the_queue_and_the_page_refreshes(
    queued, operator_page, screenshot_dir
):
    page = operator_page
    page.goto("/admin/")
    for status in QueueItem.Status.values:
        for priority in QueueItem.Priority.values:
            assert cell(page, status, priority) == str(database_counts().get((status, priority), 0))
    assert cell(page, "all", "total") == str(QueueItem.objects.count())
    assert "HTTP 400: input too long" in page.inner_text("#top-errors")
    assert page.locator("svg.sidecar-chart rect").count() == 60
    assert page.locator("#sidecar-paused-banner").count() == 0
    docs_screenshot(page, "dashboard")

    # The script swaps in fresh figures (here on demand, rather than waiting for its timer).
    SourceDocument.objects.create(content="one more, queued while the page is open")
    before = cell(page, "pending", "medium")
    assert page.evaluate("() => window.sidecarDashboard.refresh()") is True
    assert cell(page, "pending", "medium") == str(int(before) + 1)
    assert page.is_visible(".sidecar-refresh-note")

    page.click("#sidecar-pause-button")
    page.wait_for_selector("#sidecar-paused-banner")
    assert "The queue is paused" in page.inner_text("#sidecar-paused-banner")
    assert "within 5 seconds" in page.inner_text(".messagelist")
    config.forget_cached()
    assert config.current().queue_enabled is False
    assert ConfigChange.objects.get().changed_by.username == "operator"
    page.screenshot(path=str(screenshot_dir / "dashboard.png"), full_page=True)

    page.click("#sidecar-resume-button")
    page.wait_for_selector("#sidecar-pause-button")
    assert page.locator("#sidecar-paused-banner").count() == 0
    config.forget_cached()
    assert config.current().queue_enabled is True
