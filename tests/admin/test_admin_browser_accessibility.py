"""axe-core (axe-playwright-python, which bundles it) on every admin page Sidecar adds or
overrides (tests/admin/sidecar_pages.py), in the light and the dark theme: no serious or
critical violation of its WCAG 2 A/AA and best-practice rules."""

import pytest
from axe_playwright_python.sync_playwright import Axe

from console.admin import import_uploads
from tests.admin import sidecar_pages
from tests.browser import logged_in_page

pytestmark = pytest.mark.django_db(transaction=True)

FAILING_IMPACTS = {"serious", "critical"}


@pytest.fixture
def seeded(seeded_config, fresh_search_caches, settings, tmp_path, monkeypatch):
    settings.SOURCE_UPLOAD_DIR = tmp_path / "uploads"
    monkeypatch.setattr(import_uploads, "upload_dir", lambda: tmp_path)
    return sidecar_pages.seed()


def serious_violations(page) -> list[str]:
    results = Axe().run(page).response
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']} — "
        + ", ".join(" ".join(node["target"]) for node in violation["nodes"])
        for violation in results["violations"]
        if violation["impact"] in FAILING_IMPACTS
    ]


@pytest.mark.parametrize("name", sidecar_pages.PAGES)
def test_axe_finds_no_serious_violation(browser, live_server, superuser, seeded, name):
    problems = []
    for scheme in ("light", "dark"):
        page = logged_in_page(browser, live_server, superuser, color_scheme=scheme)
        try:
            sidecar_pages.PAGES[name](page, seeded)
            page.wait_for_load_state("load")
            problems += [f"{scheme}: {violation}" for violation in serious_violations(page)]
        finally:
            page.context.close()
    assert not problems, f"{name}:\n" + "\n".join(problems)


# What has the keyboard's focus, and whether it shows: an outline or a ring (box-shadow).
FOCUSED = """() => {
  const element = document.activeElement;
  const style = getComputedStyle(element);
  const outlined = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
  return {
    tag: element.tagName.toLowerCase(),
    name: element.name || element.id || element.textContent.trim().slice(0, 40),
    inContent: !!element.closest('#content-start'),
    visible: outlined || style.boxShadow !== 'none',
  };
}"""


def test_the_settings_form_works_by_keyboard_alone_with_a_visible_focus(
    browser, live_server, superuser, seeded_config
):
    """Tab to the skip link and into the content, Tab from field to field to "Maximum retries",
    type a value, Shift+Tab back, Tab on to "Save changes" and press Enter: saved. Every
    control the focus lands on on the way shows that it has it."""
    from queue_admin import config

    page = logged_in_page(browser, live_server, superuser)
    try:
        page.goto("/admin/queue_admin/queueconfig/")
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")  # the skip link: past the header and the sidebar
        visited = []

        def tab_to(wanted: str, key: str = "Tab") -> None:
            for _ in range(60):
                page.keyboard.press(key)
                focused = page.evaluate(FOCUSED)
                assert focused["inContent"], f"the focus left the content at {focused}"
                visited.append(focused)
                if focused["name"] == wanted:
                    return
            raise AssertionError(f"{wanted} was not reached by {key}: {visited}")

        tab_to("max_retries")
        page.keyboard.press("Control+A")
        page.keyboard.type("7")
        tab_to("rate_limit_delay_ms")
        tab_to("max_retries", key="Shift+Tab")
        assert page.input_value("input[name=max_retries]") == "7"
        tab_to("_save")
        invisible = [f"<{f['tag']}> {f['name']}" for f in visited if not f["visible"]]
        assert not invisible, f"focus not visible on: {invisible}"
        assert {f["tag"] for f in visited} >= {"input", "button"}

        page.keyboard.press("Enter")
        page.wait_for_selector(".messagelist")
        assert "Maximum retries: 3 retries → 7 retries" in page.inner_text(".messagelist")
        config.forget_cached()
        assert config.current().max_retries == 7
    finally:
        page.context.close()
