"""Every URL of the site refuses whoever may not see it (CONVENTIONS 10).

The tests walk the URL resolver instead of a hand-kept list, so a page added later is checked
without anyone remembering to add it here: anonymous visitors are sent to the login page,
staff without permissions get nothing (403, or a redirect away from the page), "Queue
operators" see every Sidecar page but cannot delete documents or touch users, and users with
only view permissions get no actions that change anything.
"""

import re
import uuid

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.test import Client

from documents.models import SourceDocument
from queue_admin.models import QueueItem
from tests.helpers import all_urls

pytestmark = pytest.mark.django_db

# Pages the admin itself serves to staff without any model permission, and why that is safe.
OPEN_TO_ANY_STAFF = {
    "admin:index",  # says "You don't have permission to view or edit anything" (or the dashboard's refusal)
    "admin:password_change",  # one's own password
    "admin:password_change_done",
    "admin:jsi18n",  # the admin's translation catalogue (static JavaScript)
    "admin:logout",  # POST only; a GET is 405
}
PUBLIC = {"admin:login", "healthz", "readyz"}


@pytest.fixture
def viewer(db):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label__in=["documents", "queue_admin"], codename__startswith="view_"
        )
    )
    return User.objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def queue_operator(db):
    from django.contrib.auth.models import Group

    user = User.objects.create_user("queue-operator", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Queue operators"))  # made by queue_admin migration 0007
    return user


def test_anonymous_visitors_are_sent_to_log_in_everywhere(client, document):
    for url, name in all_urls(document):
        if name in PUBLIC:
            continue
        for method in (client.get, client.post):
            response = method(url)
            if name in ("metrics", "search-api"):
                assert response.status_code in (401, 403, 405), (url, response.status_code)
            elif name == "admin:logout":  # logging out while logged out changes nothing
                assert response.status_code == (405 if method is client.get else 302), url
            else:
                assert response.status_code == 302, (url, method.__name__, response.status_code)
                assert response["Location"].startswith("/admin/login/"), (url, response["Location"])


def test_staff_without_permissions_see_no_page_and_change_nothing(nobody_staff, document):
    client = Client()
    client.force_login(nobody_staff)
    before = SourceDocument.objects.count(), QueueItem.objects.count()
    for url, name in all_urls(document):
        if name in PUBLIC | OPEN_TO_ANY_STAFF or not url.startswith("/admin/"):
            continue
        for method in (client.get, client.post):
            response = method(url)
            refused = response.status_code in (403, 404, 405) or (
                response.status_code == 302 and not response["Location"].startswith(url)
            )
            assert refused, (url, method.__name__, response.status_code)
    assert (SourceDocument.objects.count(), QueueItem.objects.count()) == before


def test_the_admin_index_tells_staff_without_permissions_so(nobody_staff):
    client = Client()
    client.force_login(nobody_staff)
    response = client.get("/admin/")
    assert response.status_code in (200, 403)
    assert "permission" in response.content.decode().lower()


def test_users_with_view_permissions_only_get_no_actions(rf, viewer):
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label not in ("documents", "queue_admin"):
            continue  # django_q's and auth's admins are unreachable without their permissions
        request = rf.get("/admin/")
        request.user = viewer
        assert not model_admin.get_actions(request), (model.__name__, list(model_admin.get_actions(request)))
        assert not model_admin.has_add_permission(request), model.__name__
        assert not model_admin.has_change_permission(request), model.__name__
        assert not model_admin.has_delete_permission(request), model.__name__


def test_queue_operators_see_every_sidecar_page_but_cannot_delete_documents_or_manage_users(
    queue_operator, document
):
    client = Client()
    client.force_login(queue_operator)
    for url, name in all_urls(document):
        if not name or not re.match(r"admin:(documents|queue_admin)_\w+_(changelist|change)$", name):
            continue
        response = client.get(url)
        assert response.status_code in (200, 302), (url, response.status_code)
        if response.status_code == 302:  # only ever "that object does not exist" back to a list
            assert "/admin/" in response["Location"] and "login" not in response["Location"], url

    delete_url = f"/admin/documents/sourcedocument/{document.pk}/delete/"
    assert client.get(delete_url).status_code == 403
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert SourceDocument.objects.filter(pk=document.pk).exists()
    for url in ("/admin/auth/user/", "/admin/auth/group/", "/admin/auth/user/add/"):
        assert client.get(url).status_code == 403, url


# --- Every action of every ModelAdmin, POSTed by someone without its permission ----------------


@pytest.fixture
def a_row_for_every_admin(document, sql):
    """At least one row on every admin list, so every action has something to act on."""
    from datetime import timedelta

    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from django.utils import timezone
    from django_q.models import Task

    from documents.models import ApiToken
    from queue_admin import config, limits
    from queue_admin.models import ProviderBatch, Worker

    QueueItem.objects.filter(document=document).update(status="failed", error_kind="permanent")
    stuck = SourceDocument.objects.create(content="stuck in processing")
    QueueItem.objects.filter(document=stuck).update(
        status="processing", worker_id="gone", lease_expires_at=timezone.now() - timedelta(hours=1)
    )
    SourceDocument.objects.create(content="waiting to be embedded")
    sql(
        "INSERT INTO document_embeddings (document_id, chunk_index, source_text, source_text_hash, "
        "document_text_hash, embedding, model, token_count, created_at, updated_at) "
        "VALUES (%s, 0, 'x', 'h', 'h', array_fill(0.1, ARRAY[384])::vector, 'm', 1, now(), now())",
        [str(document.pk)],
    )
    Worker.objects.create(worker_id="host:1:drain:dead", hostname="host", pid=1, status="dead")
    ProviderBatch.objects.create(model="m", documents=1)  # preparing: cancelling it would act at once
    ApiToken.issue(User.objects.create_user("token-owner"), "a script")
    config.set_value("batch_size", 16)
    limits.record_failure("some-provider", "down", threshold=5)
    now = timezone.now()
    for success in (True, False):
        Task.objects.create(
            id=uuid.uuid4().hex, name=f"task-{success}", func="math.floor", started=now, stopped=now,
            success=success,
        )  # fmt: skip
    AccessAttempt.objects.create(
        username="someone", ip_address="10.0.0.1", user_agent="x", attempt_time=now,
        get_data="", post_data="", http_accept="", path_info="/admin/login/", failures_since_start=9,
    )  # fmt: skip
    for log in (AccessFailureLog, AccessLog):
        log.objects.create(
            username="someone", ip_address="10.0.0.1", user_agent="x", attempt_time=now, http_accept="",
            path_info="/admin/login/",
        )  # fmt: skip
    from django_q.tasks import async_task

    async_task("math.floor", 1.5)  # a row in the ORM broker's queue


def _every_action(request):
    """(model_admin, action name) for every action any ModelAdmin offers anyone."""
    for model, model_admin in admin.site._registry.items():
        for _, name, _ in model_admin._get_base_actions():
            yield model, model_admin, name


@pytest.mark.parametrize("who", ["staff without permissions", "viewer", "queue operator"])
def test_actions_a_user_may_not_run_change_nothing_when_posted_anyway(
    who, rf, nobody_staff, viewer, queue_operator, a_row_for_every_admin
):
    from tests import state

    user = {"staff without permissions": nobody_staff, "viewer": viewer, "queue operator": queue_operator}[
        who
    ]
    client = Client()
    client.force_login(user)
    request = rf.get("/admin/")
    request.user = user
    tried = 0
    before = state.fingerprint(exclude=frozenset({"django_session"}))
    for model, model_admin, name in _every_action(request):
        if name in model_admin.get_actions(request):
            continue  # permitted: its own tests cover it
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        ids = [str(pk) for pk in model._default_manager.values_list("pk", flat=True)]
        assert ids, f"no {model.__name__} row to act on"
        for extra in ({}, {"select_across": "1"}, {"post": "yes", "confirm_reembed": "yes"}):
            response = client.post(url, {"action": name, "_selected_action": ids, "index": "0", **extra})
            assert response.status_code in (200, 302, 403), (url, name, response.status_code)
        tried += 1
    after = state.fingerprint(exclude=frozenset({"django_session"}))
    assert state.changed_tables(before, after) == []
    assert tried >= 10


def test_logged_in_users_without_staff_status_get_no_admin_page(django_user_model, document):
    user = django_user_model.objects.create_user("not-staff", password="pw")
    client = Client()
    client.force_login(user)
    for url, name in all_urls(document):
        if name in PUBLIC or not url.startswith("/admin/") or name == "admin:logout":
            continue
        for method in (client.get, client.post):
            response = method(url)
            assert response.status_code == 302, (url, method.__name__, response.status_code)
            assert response["Location"].startswith("/admin/login/"), url
