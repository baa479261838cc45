"""Plain helper functions the tests share (fixtures live in tests/conftest.py).

Importable without Django set up (the chaos runner, `python -m tests.chaos`, imports it before
it starts its database): models and Django's machinery are imported inside the functions.
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path

from tests import secrets

# The repository root, wherever a test file sits under tests/.
ROOT = Path(__file__).resolve().parent.parent


# --- The test database and the queue settings ------------------------------------------------


def database_url(name: str | None = None):
    """The URL of the database this test uses (pytest-django's test_sidecar), or of database
    `name` on the same server, for subprocesses."""
    from django.db import connection

    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{name or db['NAME']}"


def run_sql(statement, params=None):
    """Run raw SQL on the test's connection as a non-Django writer would (psql, another
    service); returns the rows if any, else the row count."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else cursor.rowcount


def set_config(**values):
    from queue_admin import config
    from queue_admin.models import QueueConfig

    for key, value in values.items():
        # A key that follows the provider has no row until set (migration 0003).
        item = QueueConfig.objects.filter(config_key=key).first() or QueueConfig(config_key=key)
        item.config_value = value
        item.save()
    config.forget_cached()


def live_items(document_id):
    from queue_admin.models import QueueItem

    return list(QueueItem.objects.filter(document_id=document_id, status__in=QueueItem.LIVE_STATUSES))


# --- Waiting ------------------------------------------------------------------------------------


def wait_until(condition, timeout, message=lambda: "timed out"):
    """Poll `condition` every 0.2 s; fail with `message()` once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message()
        time.sleep(0.2)


# --- Ports and embedded PostgreSQL servers started by the tests themselves -----------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_processes(data_dir: Path) -> list[int]:
    """Every live process working in data_dir: the postmaster and its children."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.path.samefile(entry / "cwd", data_dir):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def wait_until_dead(pid: int, seconds: float = 5) -> bool:
    """Signals are delivered asynchronously; a zombie counts as dead (init may be slow to reap it)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.01)
    return False


def reachable_tmp_dir(parent: str | None = None) -> Path:
    # Not tmp_path: it lies under /tmp/pytest-of-root (mode 0700), which the server's user
    # sidecar-pg may not enter; the launcher rightly refuses such a place (see
    # test_unreachable_folder_is_named_and_left_alone). This folder is ours, so we open it.
    folder = Path(tempfile.mkdtemp(prefix="sidecar-embedded-db-", dir=parent))
    folder.chmod(0o755)
    return folder


def shut_down_every_server_in(folder: Path) -> None:
    """Immediate shutdown (SIGQUIT) of every server under folder, then SIGKILL for anything left.

    No checkpoint, as the files are deleted later, but the server still removes its shared memory.
    """
    from embedding_site import embedded_pg

    for data_dir in [pg_version.parent for pg_version in folder.rglob("PG_VERSION")]:
        running = embedded_pg.status(data_dir)
        if running["running"]:
            os.kill(running["pid"], signal.SIGQUIT)
            wait_until_dead(running["pid"])
        for pid in server_processes(data_dir):  # e.g. a child a failed test left stopped
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- Settings and management commands in a subprocess --------------------------------------------

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "x" * 30 + "production-like-secret-key-for-the-check",
    "ALLOWED_HOSTS": "sidecar.example.com",
    "DATABASE_URL": "postgres://sidecar:secret@db.example.com:5432/sidecar",
}


def manage(*args, env_overrides, drop=()):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


# --- /metrics -----------------------------------------------------------------------------------

AUTH = {"HTTP_AUTHORIZATION": f"Bearer {secrets.METRICS_TOKEN}"}  # what a scraper sends


def samples(response) -> dict:
    """{(sample name, sorted label items): value} from a 200 exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# --- The admin: the settings page's form, every URL of the site ---------------------------------

SETTINGS_URL = "/admin/queue_admin/queueconfig/"


class _Inputs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.values = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag != "input" or "name" not in attrs or attrs.get("type") == "submit":
            return
        if attrs.get("type") == "checkbox":
            if "checked" in attrs:
                self.values[attrs["name"]] = "on"
        else:
            self.values[attrs["name"]] = attrs.get("value", "")


def form_data(client, **overrides):
    """What the settings page posts, read from the page itself (values and the hidden "initial-"
    copies), with `overrides` typed into the visible fields (None unticks a checkbox)."""
    parser = _Inputs()
    parser.feed(client.get(SETTINGS_URL).content.decode())
    data = parser.values
    for name, value in overrides.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return data


def _walk(patterns, prefix="", namespace=None):
    from django.urls import URLResolver

    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(
                pattern.url_patterns, prefix + str(pattern.pattern), pattern.namespace or namespace
            )
        else:
            name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
            yield prefix + str(pattern.pattern), name


def _concrete(route: str, object_id: str) -> str:
    """A URL for a route, with every converter filled: real object ids where there are some."""
    if route.startswith("^"):  # the admin's app_list regex: (?P<app_label>documents|queue_admin|...)/$
        route = re.sub(r"\(\?P<app_label>([^|)]+)[^)]*\)", r"\1", route).lstrip("^").rstrip("$")
    route = re.sub(r"<(?:path:|int:|str:|uuid:)?object_id>", object_id, route)
    route = re.sub(r"<(?:int:|path:)?(?:id|content_type_id)>", "1", route)
    route = re.sub(r"<[^>]+>", "x", route)
    return "/" + route


def all_urls(document):
    """(url, name) for every route, with object ids of real rows where the model has one."""
    from django.urls import get_resolver

    from queue_admin.models import QueueItem

    ids = {"documents/sourcedocument/": str(document.pk)}
    item = QueueItem.objects.filter(document=document).first()
    if item:
        ids["queue_admin/queueitem/"] = str(item.pk)
    urls = []
    for route, name in _walk(get_resolver().url_patterns):
        if route in ("", "admin/r/<path:content_type_id>/<path:object_id>/") or name is None:
            # The redirect to /admin/, view-on-site (no model here defines get_absolute_url),
            # and the admin's unnamed "<id>/" routes, which only redirect to "<id>/change/".
            continue
        object_id = next((v for k, v in ids.items() if k in route), str(uuid.uuid4()))
        urls.append((_concrete(route, object_id), name))
    return urls


def make_document(title, content="Some text about foxes.", *, chunks=0, model=None, text_hash=None):
    """A document whose trigger-made queue item is removed (a settled queue), with `chunks`
    sidecar rows by `model` (default: the configured one) made from `text_hash` (default: its
    current text)."""
    from documents.models import DocumentEmbedding, SourceDocument
    from documents.providers import factory
    from queue_admin.models import QueueItem

    doc = SourceDocument.objects.create(title=title, content=content)
    doc.refresh_from_db()
    QueueItem.objects.filter(document=doc).delete()
    for index in range(chunks):
        DocumentEmbedding.objects.create(
            document=doc, chunk_index=index, source_text=f"{content} part {index}", source_text_hash="b" * 32,
            document_text_hash=text_hash or doc.content_hash, embedding=[0.123456] * 384,
            model=model or factory.get_provider().model_id, token_count=7,
        )  # fmt: skip
    return doc


def add_item(doc, status, *, error="", minutes_ago=0, priority="medium"):
    """A queue item; `minutes_ago` backdates it (in one test transaction every row's
    created_at would otherwise be the same instant)."""
    from datetime import timedelta

    from django.utils import timezone

    from queue_admin.models import QueueItem

    item = QueueItem.objects.create(document=doc, status=status, priority=priority, error_message=error)
    if minutes_ago:
        QueueItem.objects.filter(pk=item.pk).update(
            created_at=timezone.now() - timedelta(minutes=minutes_ago)
        )
    return item


# --- Host applications' tables (tests/sources/) -------------------------------------------------


def drop_host_tables(*tables: str) -> None:
    """Drop tables a transactional test made as the host application's, and the mirror
    functions of sources attached to them: the flush after such a test empties Sidecar's
    tables, not these."""
    import psycopg

    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {', '.join(tables)}")
        for (function,) in conn.execute(
            "SELECT oid::regprocedure::text FROM pg_proc WHERE proname LIKE 'sidecar_source_%_mirror'"
        ).fetchall():
            conn.execute(f"DROP FUNCTION {function} CASCADE")  # with triggers on tables left elsewhere
