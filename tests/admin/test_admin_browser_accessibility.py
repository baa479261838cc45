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
