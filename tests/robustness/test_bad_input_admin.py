"""Tampered admin forms: hidden fields changed, ids that are not ids, values
no page offers. Each is refused with a message (never a 500) and no table changes.

Already tested elsewhere: a non-numeric hidden initial value on the settings page and a
concurrent edit (tests/admin/test_admin_settings.py), a tampered or another user's import token
(tests/documents/test_import_documents.py), a malformed document id in "Re-embed selected" and a bad
backfill choice (tests/admin/test_admin_documents.py).
"""

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import models

from documents.models import ApiToken, SourceDocument
from queue_admin.models import ConfigChange, QueueItem
from tests import state
from tests.helpers import SETTINGS_URL as SETTINGS
from tests.helpers import form_data

pytestmark = pytest.mark.django_db

DOCUMENTS = "/admin/documents/sourcedocument/"


def messages_of(response):
    return [str(m) for m in response.context["messages"]] if response.context else []


def unchanged(before) -> list[str]:
    return state.changed_tables(before, state.fingerprint())


# --- The settings page's hidden "initial-" values -----------------------------------------------

TAMPERED_SETTINGS = {
    "the switch's initial value flipped": ({"initial-queue_enabled": "False"}, {}),
    "a weight's initial value not a number": (
        {"initial-priority_weights_high": "lots"},
        {"priority_weights_high": "9"},
    ),
    "an initial value removed": ({"initial-lease_seconds": None}, {"lease_seconds": "600"}),
    "an initial value made to match a wanted value": ({"initial-max_retries": "7"}, {"max_retries": "7"}),
}


@pytest.mark.parametrize("case", TAMPERED_SETTINGS, ids=list(TAMPERED_SETTINGS))
def test_tampered_initial_values_on_the_settings_page_save_nothing(admin_client, case):
    hidden, typed = TAMPERED_SETTINGS[case]
    data = form_data(admin_client, **typed)
    for name, value in hidden.items():
        if value is None:
            data.pop(name)
        else:
            data[name] = value
    before = state.fingerprint()
    response = admin_client.post(SETTINGS, data, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    if case == "an initial value made to match a wanted value":
        # The page then thinks nothing changed: the stored value stays, and it says so.
        assert "Nothing changed." in page
    else:
        assert "changed since you opened this page" in page and "Nothing was saved" in page
    assert unchanged(before) == [] and not ConfigChange.objects.exists()


def test_an_empty_post_to_the_settings_page_saves_nothing(admin_client):
    before = state.fingerprint()
    response = admin_client.post(SETTINGS, {})
    assert response.status_code == 200 and "Nothing was saved" in response.content.decode()
    assert unchanged(before) == []


# --- The re-embed confirmation's hidden ids and count --------------------------------------------


@pytest.fixture
def seven_documents(db):
    docs = [SourceDocument.objects.create(title=f"doc {n}", content=f"text {n}") for n in range(7)]
    QueueItem.objects.update(status="completed")
    return docs


def confirm_reembed(client, ids, **extra):
    data = {"action": "reembed_selected", "_selected_action": [str(i) for i in ids], "confirm_reembed": "yes"}
    return client.post(DOCUMENTS, {**data, **extra}, follow=True)


@pytest.mark.parametrize("confirmed", ["1", "-5", "many", "", None])
def test_select_all_with_a_count_below_what_matches_queues_nothing(admin_client, seven_documents, confirmed):
    """The confirmation said "re-embed N"; a submit that would queue more is refused."""
    extra = {"select_across": "1"}
    if confirmed is not None:
        extra["confirmed_documents"] = confirmed
    before = state.fingerprint()
    response = confirm_reembed(admin_client, [seven_documents[0].pk], **extra)
    assert response.status_code == 200
    assert any("Nothing was queued: 7 documents match now, more than the" in m for m in messages_of(response))
    assert unchanged(before) == []


def test_select_all_with_the_count_that_was_shown_queues_them(admin_client, seven_documents):
    response = confirm_reembed(
        admin_client, [seven_documents[0].pk], select_across="1", confirmed_documents="7"
    )
    assert "Queued 7 documents for re-embedding at high priority, even if unchanged." in messages_of(response)


def test_ids_of_documents_that_never_existed_are_reported_as_skipped(admin_client, seven_documents):
    import uuid

    before = state.fingerprint()
    response = confirm_reembed(admin_client, [uuid.uuid4(), uuid.uuid4()])
    assert messages_of(response) == ["Skipped 2 of the 2 documents you confirmed: deleted since."]
    assert unchanged(before) == []


# --- Ids that are not ids, on every list of the site ---------------------------------------------

MALFORMED = ["not-a-uuid", "abc", "1; DROP TABLE source_documents"]
# Readable as an id but matching no row: whatever the action says, nothing may change.
NO_SUCH_ROW = ["9" * 40, ""]


def lists_with_actions(request):
    for model, model_admin in admin.site._registry.items():
        if model_admin.get_actions(request):
            yield model, model_admin


def test_a_malformed_selection_is_refused_on_every_list(admin_client, admin_user, rf, document):
    request = rf.get("/admin/")
    request.user = admin_user
    lists = list(lists_with_actions(request))
    assert len(lists) >= 10
    before = state.fingerprint()
    for model, model_admin in lists:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for action in model_admin.get_actions(request):
            for bad in MALFORMED + NO_SUCH_ROW:
                response = admin_client.post(url, {"action": action, "_selected_action": [bad], "index": "0"})
                text_ids = isinstance(model._meta.pk, models.CharField)  # any text is a possible id
                expected = (302,) if bad in MALFORMED and not text_ids else (200, 302)
                assert response.status_code in expected, (url, action, bad, response.status_code)
        response = admin_client.get(url)
        refused = [m for m in messages_of(response) if "The selection is not valid" in m]
        assert refused or isinstance(model._meta.pk, models.CharField), (url, messages_of(response))
    assert unchanged(before) == []


# --- Values no page offers --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["maybe", "", "ON", "on\x00", "true"])
def test_the_pause_switch_refuses_anything_but_on_or_off(admin_client, seeded_config, value):
    before = state.fingerprint()
    response = admin_client.post("/admin/dashboard/queue-switch/", {"queue_enabled": value}, follow=True)
    assert "Nothing changed: the form must send queue_enabled=on or off." in messages_of(response)
    assert unchanged(before) == []


@pytest.mark.parametrize("user", ["999999", "abc", "-1", ""])
def test_an_api_token_for_a_user_that_does_not_exist_is_refused(admin_client, user):
    before = state.fingerprint()
    response = admin_client.post("/admin/documents/apitoken/add/", {"user": user, "name": "forged"})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors.get("user")
    assert unchanged(before) == [] and not ApiToken.objects.exists()


def test_read_only_fields_posted_anyway_are_ignored(admin_client, document):
    """id and the timestamps are shown, not edited: a POST that carries them changes the text
    it may change and nothing else."""
    original = SourceDocument.objects.get(pk=document.pk)
    response = admin_client.post(
        f"{DOCUMENTS}{document.pk}/change/",
        {
            "title": "renamed", "content": original.content, "metadata": "{}",
            "id": "00000000-0000-0000-0000-000000000000", "created_at": "2000-01-01 00:00:00",
            "embeddings-TOTAL_FORMS": "0", "embeddings-INITIAL_FORMS": "0",
        },
    )  # fmt: skip
    assert response.status_code == 302
    saved = SourceDocument.objects.get(pk=document.pk)
    assert saved.title == "renamed" and saved.created_at == original.created_at
    assert SourceDocument.objects.count() == 1


@pytest.mark.parametrize("token", ["..%2F..%2F..%2Fetc%2Fpasswd", "x" * 300, "%00", "AAAA"])
def test_an_import_preview_token_that_was_never_issued_finds_nothing(admin_client, token):
    before = state.fingerprint()
    for method in (admin_client.get, admin_client.post):
        response = method(f"{DOCUMENTS}import/{token}/", follow=True)
        assert response.status_code in (200, 404)
        assert b"root:" not in response.content
    assert unchanged(before) == []


def test_staff_cannot_raise_their_own_permissions_through_their_password_page(db):
    """The one page any staff member may post to changes the password only."""
    from django.test import Client

    user = User.objects.create_user("plain-staff", password="old-pass-1234!", is_staff=True)
    client = Client()
    client.force_login(user)
    client.post(
        "/admin/password_change/",
        {
            "old_password": "old-pass-1234!", "new_password1": "N3w-pass-5678!", "new_password2": "N3w-pass-5678!",
            "is_superuser": "on", "user_permissions": "1", "groups": "1",
        },
    )  # fmt: skip
    user.refresh_from_db()
    assert user.check_password("N3w-pass-5678!")
    assert not user.is_superuser and not user.user_permissions.exists() and not user.groups.exists()
