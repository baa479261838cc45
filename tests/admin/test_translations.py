"""Sidecar's own pages in the operator's language: the German catalogue is complete and
compiled, it covers every string the code marks, and a German browser gets the dashboard and
the settings page in German (a language Sidecar does not ship falls back to English)."""

import gettext
import io
import os
import shutil
import subprocess
import sys

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from queue_admin import config
from tests.browser import logged_in_page
from tests.helpers import ROOT, SETTINGS_URL, form_data

CATALOGUE = ROOT / "locale" / "de" / "LC_MESSAGES"
SHIPPED = [code for code, _name in settings.LANGUAGES if code != "en"]
# What makemessages reads: Sidecar's code and templates, nothing else (docs/translating.md).
SOURCES = ["console", "documents", "queue_admin", "embedding_site", "templates", "manage.py"]
MAKEMESSAGES_IGNORE = ["--ignore=*/migrations/*", "--no-location"]


def _messages(po_path) -> dict:
    with open(po_path, "rb") as handle:
        catalogue = read_po(handle)
    return {message.id: message for message in catalogue if message.id}


def test_german_is_shipped_and_every_string_is_translated():
    assert SHIPPED == ["de"]
    messages = _messages(CATALOGUE / "django.po")
    assert len(messages) > 200  # the dashboard's and the settings page's strings at least
    untranslated = [mid for mid, message in messages.items() if not message.string or not all(message.string)]
    fuzzy = [mid for mid, message in messages.items() if message.fuzzy]
    assert untranslated == [] and fuzzy == []


def test_every_placeholder_survives_translation():
    """A translation that drops or misspells %(name)s would raise (or print a wrong figure) at
    run time, on one language's page only."""
    import re

    placeholder = re.compile(r"%\(\w+\)[sdr]")
    wrong = []
    for mid, message in _messages(CATALOGUE / "django.po").items():
        if isinstance(mid, str):
            if sorted(placeholder.findall(mid)) != sorted(placeholder.findall(message.string)):
                wrong.append(mid)
            continue
        # A plural: each form names no placeholder its English lacks (a singular may leave out
        # the count, as English "the first row" does), and the plural keeps them all.
        for english, translated in zip(mid, message.string, strict=True):
            if not set(placeholder.findall(translated)) <= set(placeholder.findall(english)):
                wrong.append(english)
        if set(placeholder.findall(mid[1])) != set(placeholder.findall(message.string[1])):
            wrong.append(mid[1])
    assert wrong == []


def test_the_compiled_catalogue_is_the_source_catalogue():
    """django.mo is committed (a fresh machine needs no gettext tools to run Sidecar); it must say
    what django.po says, so an edit to the .po without `make messages` fails here."""
    with open(CATALOGUE / "django.po", "rb") as handle:
        source = read_po(handle)
    compiled = io.BytesIO()
    write_mo(compiled, source)
    compiled.seek(0)
    expected = gettext.GNUTranslations(compiled)._catalog
    with open(CATALOGUE / "django.mo", "rb") as handle:
        shipped = gettext.GNUTranslations(handle)._catalog
    assert {k: v for k, v in shipped.items() if k} == {k: v for k, v in expected.items() if k}


def test_the_catalogue_holds_exactly_the_strings_the_code_marks(tmp_path):
    """makemessages over a copy of the code finds no string missing from the catalogue (a new
    `gettext` or `{% translate %}` nobody translated) and none the code no longer uses."""
    if shutil.which("xgettext") is None:
        if os.environ.get("SIDECAR_REQUIRE_BROWSER") == "1":
            pytest.fail("xgettext (Debian's gettext) is needed: `make test` installs it as root")
        pytest.skip("xgettext not found: apt-get install gettext (make test installs it as root)")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, tmp_path / name)
    (tmp_path / "locale" / "de" / "LC_MESSAGES").mkdir(parents=True)
    env = {**os.environ, "DEBUG": "1", "PYTHONPATH": str(tmp_path)}
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "de", *MAKEMESSAGES_IGNORE],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    found = set(_messages(tmp_path / "locale" / "de" / "LC_MESSAGES" / "django.po"))
    catalogue = set(_messages(CATALOGUE / "django.po"))
    assert sorted(map(str, found - catalogue)) == [], "marked in the code, missing from the catalogue"
    assert sorted(map(str, catalogue - found)) == [], "in the catalogue, no longer in the code"


@pytest.fixture
def german_client(db, seeded_config):
    user = User.objects.create_superuser("sprecher", "sprecher@example.com", "pw")
    client = Client(HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9,en;q=0.5")
    client.force_login(user)
    return client


def test_the_dashboard_speaks_german(german_client):
    html = german_client.get("/admin/").content.decode()
    assert '<html lang="de"' in html
    for phrase in (
        "Wartend oder in Arbeit",
        "Durchsatz",
        "Zeit bis leer",
        "Embedding-Anbieter",
        "Verwaltung",
    ):
        assert phrase in html
    for phrase in ("Waiting or in progress", "Time to drain", "Embedding provider"):
        assert phrase not in html
    # The menu names Sidecar's lists in German too (models' verbose names, singular and plural).
    for phrase in ("Quelldokumente", "Unzustellbare Einträge", "Warteschlangen-Einstellungen", "Erweitert"):
        assert phrase in html
    for phrase in ("Source documents", "Dead letters", "Queue settings"):
        assert phrase not in html


def test_the_settings_page_speaks_german(german_client):
    html = german_client.get(SETTINGS_URL).content.decode()
    assert '<html lang="de"' in html
    for phrase in (
        "Stapelgröße",
        "Dokumente, die ein Worker auf einmal übernimmt",
        "Änderungen speichern",
        "Modus",
    ):
        assert phrase in html
    assert "Batch size" not in html


def test_a_german_save_answers_in_german(german_client):
    response = german_client.post(SETTINGS_URL, form_data(german_client, batch_size="viele"))
    html = response.content.decode()
    assert "Nichts gespeichert" in html
    assert "Stapelgröße: Bitte eine ganze Zahl von 1 bis 1,000 eingeben." in html
    assert config.current().batch_size == 32


def test_a_language_sidecar_does_not_ship_gets_english(db, seeded_config):
    """French is not in LANGUAGES: the whole page is English, not Django's French around
    Sidecar's English."""
    user = User.objects.create_superuser("lecteur", "lecteur@example.com", "pw")
    client = Client(HTTP_ACCEPT_LANGUAGE="fr-FR,fr;q=0.9")
    client.force_login(user)
    html = client.get("/admin/").content.decode()
    assert '<html lang="en"' in html
    assert "Waiting or in progress" in html and "Déconnexion" not in html


@pytest.mark.django_db(transaction=True)
def test_a_german_browser_sees_the_dashboard_and_the_settings_page_in_german(
    browser, live_server, superuser, seeded_config
):
    """Chromium set to German (its Accept-Language: de-DE): the dashboard's cards and the
    settings page, labels and help included, are German, and the page says lang="de"."""
    page = logged_in_page(browser, live_server, superuser, locale="de-DE")
    try:
        page.goto("/admin/")
        assert page.evaluate("() => document.documentElement.lang") == "de"
        assert page.locator("#card-live h3").text_content() == "Wartend oder in Arbeit"
        assert page.locator("#card-drain h3").text_content() == "Zeit bis leer"
        assert page.locator("#sidecar-pause-button").inner_text() == "Warteschlange anhalten"
        page.goto(SETTINGS_URL)
        assert page.evaluate("() => document.documentElement.lang") == "de"
        assert page.locator("label[for=id_batch_size]").inner_text() == "Stapelgröße"
        assert "ganze Zahl von 1 bis 1,000" in page.locator("#setting-batch_size").inner_text()
        assert page.locator("input[name=_save]").get_attribute("value") == "Änderungen speichern"
    finally:
        page.context.close()
