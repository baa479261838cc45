"""Accessibility, checked by axe-core (axe-playwright-python, which bundles it: nothing is
downloaded) in Chromium on every page Sidecar adds or overrides, in both themes: no serious or
critical violation. And the settings form works by keyboard alone, with a visible focus."""

import json

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.urls import reverse

from queue_admin.models import QueueItem
from tests.admin.test_admin_browser_layout import busy_queue, page_paths  # noqa: F401  (fixture)
from tests.browser import logged_in_page
from tests.helpers import SETTINGS_URL

pytestmark = pytest.mark.django_db(transaction=True)

SERIOUS = {"serious", "critical"}


def serious_violations(page) -> list[str]:
    results = Axe().run(page)
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']} — "
        + ", ".join(str(node["target"]) for node in violation["nodes"][:5])
        for violation in results.response["violations"]
        if violation["impact"] in SERIOUS
    ]


def choose_action(page, list_path: str, action: str) -> None:
    """Tick every row of a changelist and run `action` (its confirmation page follows)."""
    page.goto(list_path)
    page.check("#action-toggle")
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")


@pytest.mark.parametrize("theme", ("light", "dark"))
def test_no_page_has_a_serious_accessibility_violation(browser, live_server, superuser, busy_queue, theme):  # noqa: F811
    page = logged_in_page(browser, live_server, superuser, color_scheme=theme)
    found = {}
    try:
        for name, path in page_paths(busy_queue).items():
            page.goto(path)
            if problems := serious_violations(page):
                found[name] = problems
        # The confirmation pages Sidecar draws for its actions.
        choose_action(page, reverse("admin:documents_sourcedocument_changelist"), "reembed_selected")
        page.wait_for_selector("#reembed-summary")
        if problems := serious_violations(page):
            found["re-embed confirmation"] = problems
        choose_action(page, reverse("admin:queue_admin_deadletter_changelist"), "retry")
        page.wait_for_selector("#retry-warning")
        if problems := serious_violations(page):
            found["retry warning"] = problems
    finally:
        page.context.close()
    assert found == {}, json.dumps(found, indent=1)


def test_the_settings_form_works_by_keyboard_with_a_visible_focus(
    browser, live_server, superuser, seeded_config
):
    """Tab to the batch size, type a value, Tab on to Save and press Enter: saved. Every field
    and button on the way shows where the focus is (an outline or a ring, not nothing)."""
    page = logged_in_page(browser, live_server, superuser)
    try:
        page.goto(SETTINGS_URL)
        unmarked = []
        for _ in range(80):
            page.keyboard.press("Tab")
            focused = page.evaluate(
                """() => {
                  const el = document.activeElement, style = getComputedStyle(el);
                  const ring = (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0)
                               || (style.boxShadow && style.boxShadow !== 'none');
                  return {id: el.id, name: el.name || '', tag: el.tagName, ring,
                          inForm: !!el.closest('#queue-settings-form')};
                }"""
            )
            if focused["inForm"] and not focused["ring"]:
                unmarked.append(f"{focused['tag']} {focused['name'] or focused['id']}")
            if focused["name"] == "batch_size":
                page.keyboard.press("Control+A")
                page.keyboard.type("48")
            if focused["name"] == "_save":
                page.keyboard.press("Enter")
                break
        else:
            pytest.fail("Tab never reached the Save button")
        page.wait_for_selector(".messagelist .success")
        assert unmarked == []
    finally:
        page.context.close()
    from queue_admin import config

    config.forget_cached()
    assert config.current().batch_size == 48
    assert QueueItem.objects.count() == 0  # nothing else happened on the way
