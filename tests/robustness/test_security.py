"""Security: failed logins are throttled, every form needs its CSRF token,
API keys appear nowhere people or other programs can read them, the provider's address comes
from the environment only, and DEBUG off shows no tracebacks.

Who may open which page and run which action is walked URL by URL in tests/admin/test_admin_access.py.
"""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.db import models
from django.test import Client
from django.utils import timezone

from documents.models import SourceDocument
from documents.providers import factory
from documents.providers.http import close_shared_clients
from queue_admin import config
from queue_admin.models import QueueConfig, QueueItem
from queue_admin.worker import QueueWorker
from tests import secrets, state
from tests.fault_server import FakeEmbedder, Fault
from tests.helpers import all_urls, set_config

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
PASSWORD = "correct horse battery staple"


# --- Repeated failed logins are throttled (django-axes, counted in PostgreSQL) -----------------


@pytest.fixture
def alice(db):
    return User.objects.create_user("alice", password=PASSWORD, is_staff=True)


@pytest.fixture
def bob(db):
    return User.objects.create_user("bob", password=PASSWORD, is_staff=True)


def log_in(client, username, password):
    return client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"})


def is_logged_in(client) -> bool:
    return client.get("/admin/").status_code == 200


def test_after_the_failure_limit_even_the_right_password_is_refused_with_a_message(alice, settings):
    client = Client()
    for attempt in range(1, settings.LOGIN_FAILURE_LIMIT):
        response = log_in(client, "alice", f"wrong {attempt}")
        assert response.status_code == 200 and b"Please enter the correct username" in response.content
    response = log_in(client, "alice", "wrong again")  # the limit: this one locks
    assert response.status_code == 429
    response = log_in(client, "alice", PASSWORD)
    assert response.status_code == 429
    page = " ".join(response.content.decode().split())
    assert "Too many failed logins for “alice”" in page and "even the right password is refused" in page
    assert f"locked for {settings.LOGIN_LOCKOUT_MINUTES} more minutes" in page
    assert 14 * 60 < int(response["Retry-After"]) <= 15 * 60
    assert not is_logged_in(client)


def test_other_users_are_not_affected_by_someone_elses_lock(alice, bob, settings):
    client = Client()
    for attempt in range(settings.LOGIN_FAILURE_LIMIT):
        log_in(client, "alice", f"wrong {attempt}")
    assert log_in(client, "alice", PASSWORD).status_code == 429
    response = log_in(client, "bob", PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert is_logged_in(client)


def test_the_lock_ends_after_the_lockout_time(alice, settings):
    client = Client()
    for attempt in range(settings.LOGIN_FAILURE_LIMIT):
        log_in(client, "alice", f"wrong {attempt}")
    assert log_in(client, "alice", PASSWORD).status_code == 429
    # Time passes: the failures are now older than the lockout time.
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES, seconds=1)
    )
    response = log_in(client, "alice", PASSWORD)
    assert response.status_code == 302 and is_logged_in(client)
    assert not AccessAttempt.objects.exists()  # a successful login starts the count afresh


def test_a_successful_login_resets_the_count(alice, settings):
    client = Client()
    for attempt in range(settings.LOGIN_FAILURE_LIMIT - 1):
        log_in(client, "alice", f"wrong {attempt}")
    assert log_in(client, "alice", PASSWORD).status_code == 302
    client.post("/admin/logout/")
    for attempt in range(settings.LOGIN_FAILURE_LIMIT - 1):
        assert log_in(client, "alice", f"wrong {attempt}").status_code == 200
    assert log_in(client, "alice", PASSWORD).status_code == 302


def test_the_throttle_keeps_no_password(alice, settings):
    client = Client()
    for attempt in range(settings.LOGIN_FAILURE_LIMIT):
        log_in(client, "alice", f"guess-{attempt}-hunter2")
    assert not state.rows_containing("hunter2")


# --- CSRF on every form ------------------------------------------------------------------------


def test_every_post_without_the_csrf_token_is_refused_and_changes_nothing(admin_user, document):
    """Every route the site serves, POSTed by a logged-in superuser without the token: 403."""
    QueueItem.objects.filter(document=document).update(status="failed")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    before = state.fingerprint()
    for url, name in all_urls(document):
        response = client.post(url, {"post": "yes"})
        assert response.status_code == 403, (url, name, response.status_code)
        assert b"CSRF" in response.content, url
    assert state.changed_tables(before, state.fingerprint()) == []


MEANINGFUL_POSTS = {
    "save queue settings": ("/admin/queue_admin/queueconfig/", {"batch_size": "8", "initial-batch_size": "32"}),
    "pause the queue": ("/admin/dashboard/queue-switch/", {"queue_enabled": "off"}),
    "retry a dead letter": (
        "/admin/queue_admin/queueitem/",
        {"action": "retry_selected", "_selected_action": "ITEM", "index": "0"},
    ),
    "add a document": (
        "/admin/documents/sourcedocument/add/",
        {"title": "t", "content": "c", "metadata": "{}", "embeddings-TOTAL_FORMS": "0", "embeddings-INITIAL_FORMS": "0"},
    ),
    "confirm a re-embed": (
        "/admin/documents/sourcedocument/",
        {"action": "reembed_selected", "_selected_action": "DOC", "confirm_reembed": "yes"},
    ),
    "queue a backfill": ("/admin/documents/sourcedocument/backfill/", {"kind": "MISSING_OR_STALE", "priority": "low"}),
    "issue an API token": ("/admin/documents/apitoken/add/", {"user": "USER", "name": "stolen"}),
    "log in": (LOGIN, {"username": "USERNAME", "password": "pw"}),
}  # fmt: skip


@pytest.mark.parametrize("case", MEANINGFUL_POSTS, ids=list(MEANINGFUL_POSTS))
def test_a_forged_form_with_real_data_but_no_token_changes_nothing(admin_user, document, case):
    url, data = MEANINGFUL_POSTS[case]
    item = QueueItem.objects.get(document=document)
    QueueItem.objects.filter(pk=item.pk).update(status="failed")
    placeholders = {"ITEM": str(item.pk), "DOC": str(document.pk), "USER": str(admin_user.pk)}
    placeholders["USERNAME"] = admin_user.username
    from queue_admin import backfill

    placeholders["MISSING_OR_STALE"] = backfill.MISSING_OR_STALE
    data = {key: placeholders.get(value, value) for key, value in data.items()}
    client = Client(enforce_csrf_checks=True)
    if case != "log in":
        client.force_login(admin_user)
    before = state.fingerprint()
    response = client.post(url, data)
    assert response.status_code == 403 and b"CSRF" in response.content
    assert state.changed_tables(before, state.fingerprint()) == []


# --- API keys never in the database, logs, admin pages or error answers -----------------------

CONFIGURED_SECRETS = (secrets.OPENAI_API_KEY, secrets.OPS_API_KEY, secrets.METRICS_TOKEN)


@pytest.fixture
def failing_http_provider(settings, seeded_config, fresh_search_caches):
    """The configured provider is OpenAI-compatible at a fake service that echoes the bearer
    key it was sent into its error bodies; a fallback (same model, another key) too."""
    with FakeEmbedder(dimensions=settings.EMBEDDING_DIMENSIONS) as fake:
        settings.EMBEDDING_PROVIDER, settings.EMBEDDING_MODEL = "openai", "fake-model"
        settings.EMBEDDING_BASE_URL, settings.EMBEDDING_API_KEY = fake.openai_url, secrets.OPENAI_API_KEY
        settings.EMBEDDING_FALLBACK_PROVIDER, settings.EMBEDDING_FALLBACK_MODEL = "openai", "fake-model"
        settings.EMBEDDING_FALLBACK_BASE_URL = fake.openai_url
        settings.EMBEDDING_FALLBACK_API_KEY = secrets.OPS_API_KEY
        settings.METRICS_TOKEN = secrets.METRICS_TOKEN
        settings.EMBEDDING_HTTP_MAX_RETRY_WAIT_SECONDS = 0
        factory.get_provider.cache_clear()
        yield fake
        factory.get_provider.cache_clear()
        close_shared_clients()


@pytest.mark.django_db(transaction=True)  # a real worker, with its heartbeat thread
def test_api_keys_never_reach_the_database_admin_pages_or_error_answers(
    failing_http_provider, admin_client, caplog
):
    fake = failing_http_provider
    set_config(batch_size=1, circuit_breaker_failure_threshold=1)
    echo = {"echo_authorization": True}
    # Every way a request can fail, each error body quoting the key it was sent.
    fake.script(
        Fault(status=401, **echo),  # permanent: dead letter with the message
        *[Fault(status=503, **echo)] * 6,  # transient on primary and fallback: retried, breaker opens
        Fault(status=429, headers={"Retry-After": "30"}, **echo),
        *[Fault(status=401, **echo)] * 4,  # the search API and the search page
    )
    for n in range(3):
        SourceDocument.objects.create(title=f"doc {n}", content=f"text number {n}")
    with QueueWorker(factory.get_provider(), name="leak-test") as worker:
        for _ in range(3):
            worker.process_one_batch()
    assert fake.count() >= 4
    assert QueueItem.objects.filter(error_message__contains="[redacted]").exists()  # it was echoed

    answers = {}
    api_client = Client()
    api_client.force_login(User.objects.get(username="admin"))
    answers["search API"] = api_client.get("/api/search", {"q": "leak"})
    answers["search page"] = admin_client.post("/admin/search/", {"q": "leak", "k": "10"})
    answers["metrics"] = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {secrets.METRICS_TOKEN}")
    answers["metrics, wrong token"] = Client().get(
        "/metrics", HTTP_AUTHORIZATION="Bearer nope-nope-nope-nope"
    )
    answers["readyz"] = Client().get("/readyz")
    document = SourceDocument.objects.first()
    for url, name in all_urls(document):
        if name and name.startswith("admin:") and name != "admin:logout":
            answers[url] = admin_client.get(url, follow=True)
    assert answers["/admin/"].status_code == 200

    for secret in CONFIGURED_SECRETS:
        assert state.rows_containing(secret) == {}, secret
        for where, response in answers.items():
            body = b"".join(response.streaming_content) if response.streaming else response.content
            assert secret.encode() not in body, (secret, where)
            assert secret not in str(response.headers), (secret, where)
        assert secret not in caplog.text


# --- The provider's address comes from the environment only (no SSRF through the admin) -------


# Written by the workers about themselves and read-only in the admin: never used to connect.
MACHINE_OWNED = {("Worker", "hostname")}


def test_no_model_field_or_queue_setting_can_hold_an_address():
    from django.apps import apps

    for model in [
        *apps.get_app_config("documents").get_models(),
        *apps.get_app_config("queue_admin").get_models(),
    ]:
        for field in model._meta.get_fields():
            assert not isinstance(field, models.URLField | models.GenericIPAddressField), (model, field.name)
            if (model.__name__, field.name) in MACHINE_OWNED:
                continue
            assert not any(word in field.name for word in ("url", "host", "endpoint", "address")), (
                model.__name__,
                field.name,
            )
    # Queue settings are on/off switches and whole numbers only: no text can be stored.
    assert {item.kind for item in config.SCHEMA.values()} <= {bool, int, dict}


@pytest.mark.parametrize("key", ["embedding_base_url", "base_url", "EMBEDDING_BASE_URL"])
def test_a_base_url_cannot_be_slipped_in_as_a_queue_setting(key, admin_client, seeded_config):
    from django.core.exceptions import ValidationError

    before = state.fingerprint()
    with pytest.raises(ValidationError, match="Unknown setting"):
        config.set_value(key, "http://169.254.169.254/latest/meta-data/")
    with pytest.raises(ValidationError, match="Unknown setting"):
        QueueConfig.objects.create(config_key=key, config_value="http://169.254.169.254/")
    # The settings page ignores fields it does not know.
    html = admin_client.post(
        "/admin/queue_admin/queueconfig/", {key: "http://169.254.169.254/"}, follow=True
    ).content.decode()
    assert "169.254.169.254" not in html
    assert state.changed_tables(before, state.fingerprint()) == []


def test_no_admin_form_offers_an_address_field(rf, admin_user):
    from django.contrib import admin

    request = rf.get("/admin/")
    request.user = admin_user
    for model, model_admin in admin.site._registry.items():
        if not model_admin.has_add_permission(request):
            continue
        form = model_admin.get_form(request)
        for name in form.base_fields:
            assert not any(word in name.lower() for word in ("url", "host", "endpoint")), (
                model.__name__,
                name,
            )


def test_nobody_can_schedule_an_arbitrary_function_through_the_admin(admin_client, seeded_config):
    """django-q2's schedule admin would run any importable function with any arguments in a
    worker (an SSRF: httpx.get of an internal address); Sidecar's keeps its own schedules fixed."""
    from django_q.models import Schedule

    forged = {"name": "ssrf", "func": "httpx.get", "args": "'http://169.254.169.254/'", "schedule_type": "O"}
    assert admin_client.post("/admin/django_q/schedule/add/", forged).status_code == 403
    schedule = Schedule.objects.first()
    runs = (schedule.func, schedule.args, schedule.kwargs, schedule.hook)
    response = admin_client.post(
        f"/admin/django_q/schedule/{schedule.pk}/change/",
        {**forged, "name": schedule.name, "schedule_type": schedule.schedule_type, "repeats": "-1",
         "minutes": "5", "next_run_0": "2030-01-01", "next_run_1": "00:00:00"},
    )  # fmt: skip
    assert response.status_code in (200, 302)
    schedule.refresh_from_db()
    assert (schedule.func, schedule.args, schedule.kwargs, schedule.hook) == runs
    assert not Schedule.objects.filter(func="httpx.get").exists()


# --- DEBUG off: no tracebacks -------------------------------------------------------------------


@pytest.mark.urls("tests.urls_with_a_broken_view")
@pytest.mark.parametrize("path", ["/broken/", "/api/broken"])
def test_with_debug_off_an_error_is_a_plain_500_with_the_request_id(settings, path, caplog):
    from tests.urls_with_a_broken_view import BROKEN_DETAIL

    settings.DEBUG = False
    client = Client(raise_request_exception=False)
    response = client.get(path)
    assert response.status_code == 500
    body = response.content.decode()
    for leak in ("Traceback", "RuntimeError", BROKEN_DETAIL, "broken_view", "site-packages", "SECRET_KEY"):
        assert leak not in body, leak
    assert response["X-Request-ID"] in body
    if path.startswith("/api/"):
        assert response.json()["error"] == "Internal error; it was logged."
    else:
        assert "Something went wrong on our side" in body
    assert BROKEN_DETAIL in caplog.text  # the log has what the page leaves out


def test_with_debug_off_an_unknown_address_lists_no_routes(settings, admin_client):
    settings.DEBUG = False
    response = admin_client.get("/no-such-page/")
    assert response.status_code == 404
    assert b"admin/" not in response.content and b"URLconf" not in response.content


def test_production_settings_turn_debug_off():
    from tests.helpers import PRODUCTION_ENV, manage

    result = manage(
        "shell", "-c", "from django.conf import settings; print(settings.DEBUG)", env_overrides=PRODUCTION_ENV
    )
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr
