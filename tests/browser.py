"""Fixtures for admin tests in a real browser: Playwright driving Debian's Chromium against
pytest-django's live server (a real HTTP server on 127.0.0.1 over the test database).

Playwright cannot download its own browser here, so it launches the system Chromium
(`apt-get install chromium`; `make test` installs it when it runs as root). Without it these
tests skip with that instruction, except where SIDECAR_REQUIRE_BROWSER=1 (CI) makes a missing
browser a failure.
"""

import importlib
import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import ROOT

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "browser-test-password"
DOCS_IMAGES = ROOT / "docs" / "images"
DOCS_VIEWPORT = {"width": 1280, "height": 800}


def _chromium_path() -> str | None:
    configured = os.environ.get("CHROMIUM_PATH")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _missing(reason: str):
    message = f"{reason}. Install it to run the browser tests: sudo apt-get install chromium (or set CHROMIUM_PATH)."
    if os.environ.get("SIDECAR_REQUIRE_BROWSER") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright for Python is not installed (pip install -e '.[test]')")
    executable = _chromium_path()
    if executable is None:
        _missing("Chromium was not found")
    # Playwright's sync API keeps an asyncio loop running in this thread, which Django's
    # async-safety check takes for async code; the test code around it is plain sync code.
    # Only while the browser runs (one per test module): subprocesses started by later tests
    # inherit the environment, and `check --deploy` rightly refuses this variable.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture(scope="session")
def screenshot_dir():
    """Screenshots for people to look at: TEST_OUTPUT_DIR (default test-output/)/screenshots."""
    folder = Path(os.environ.get("TEST_OUTPUT_DIR", ROOT / "test-output")) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def docs_screenshot(page, name: str) -> None:
    """With SIDECAR_DOCS_SCREENSHOTS=1 (`make docs-screenshots`), save what `page` shows as
    docs/images/NAME.png for the admin guide: the top 1280 × 800 of the page, as a reader's
    screen would show it. Otherwise nothing; the test's own viewport is restored either way."""
    if os.environ.get("SIDECAR_DOCS_SCREENSHOTS") != "1":
        return
    viewport = page.viewport_size
    page.set_viewport_size(DOCS_VIEWPORT)
    try:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMAGES / f"{name}.png"))
    finally:
        page.set_viewport_size(viewport)


@pytest.fixture
def operators_group(transactional_db):
    """The "Queue operators" group exactly as its migrations make it (a transactional test's
    flush empties the table the migrations filled)."""
    from django.apps import apps
    from django.contrib.auth.models import Group

    migration = importlib.import_module("queue_admin.migrations.0007_queue_operators_group")
    migration.create_group(apps, None)
    importlib.import_module("queue_admin.migrations.0018_queue_operators_run_sources").grant(apps, None)
    return Group.objects.get(name=migration.GROUP)


@pytest.fixture
def superuser(transactional_db):
    from django.contrib.auth.models import User

    return User.objects.create_superuser("root-admin", "root@example.com", PASSWORD)


@pytest.fixture
def operator(operators_group):
    from django.contrib.auth.models import User

    user = User.objects.create_user("operator", "operator@example.com", PASSWORD, is_staff=True)
    user.groups.add(operators_group)
    return user


def logged_in_page(browser, live_server, user, locale: str | None = None, color_scheme: str = "light"):
    """A new browser page, logged in to the admin through its login form as `user`; `locale`
    ("de-DE") sets the browser's language, and so its Accept-Language header; `color_scheme`
    ("dark") the system theme the admin follows."""
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": 1400, "height": 1000},
        locale=locale,
        color_scheme=color_scheme,
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    return page


@pytest.fixture
def admin_page(browser, live_server, superuser, seeded_config):
    page = logged_in_page(browser, live_server, superuser)
    yield page
    page.context.close()


@pytest.fixture
def operator_page(browser, live_server, operator, seeded_config):
    page = logged_in_page(browser, live_server, operator)
    yield page
    page.context.close()
