"""The skip link: the first Tab on an admin page reaches "Skip to main content", and Enter
moves the keyboard past the header and the navigation sidebar to the page's content."""

import pytest

from tests.browser import logged_in_page

pytestmark = pytest.mark.django_db(transaction=True)

PAGES = ["/admin/", "/admin/queue_admin/worker/", "/admin/queue_admin/queueconfig/"]


@pytest.mark.parametrize("path", PAGES)
def test_the_first_tab_focuses_the_skip_link_and_enter_jumps_to_the_content(
    browser, live_server, superuser, seeded_config, path
):
    page = logged_in_page(browser, live_server, superuser)
    try:
        page.goto(path)
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => [document.activeElement.textContent.trim(), document.activeElement.getAttribute('href')]"
        )
        assert focused == ["Skip to main content", "#content-start"]
        # Hidden until focused, then on screen for a sighted keyboard user.
        box = page.locator("a.skip-to-content-link").bounding_box()
        assert box is not None and box["y"] >= 0 and box["width"] > 0
        page.keyboard.press("Enter")
        assert page.evaluate("() => document.activeElement.id") == "content-start"
        page.keyboard.press("Tab")  # the next stop is inside the content, not the sidebar
        assert page.evaluate("() => !!document.activeElement.closest('#content-start')")
    finally:
        page.context.close()


def test_the_search_page_starts_in_its_query_box_inside_the_content(
    browser, live_server, superuser, seeded_config
):
    """The search page focuses its query box on load (typing a query is why one opens it), so
    the keyboard is already past the navigation the skip link exists to skip."""
    page = logged_in_page(browser, live_server, superuser)
    try:
        page.goto("/admin/search/")
        # Chromium applies autofocus once the page has rendered, which may come just after the
        # load event on a busy machine: wait for it (it still fails if it never happens).
        page.wait_for_function("() => document.activeElement && document.activeElement.name === 'q'")
        assert page.evaluate("() => document.activeElement.name") == "q"
        assert page.evaluate("() => !!document.activeElement.closest('#content-start')")
    finally:
        page.context.close()
