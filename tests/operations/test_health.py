"""/healthz and /readyz against the real database: healthy, degraded (warn) and not ready (503)."""

from urllib.parse import urlsplit

import pytest
from django.db import connections
from django.db.migrations.loader import MigrationLoader

from console import health
from embedding_site.db.base import DatabaseWrapper
from queue_admin.models import Worker
from tests.helpers import set_config

COMPONENTS = {"database", "migrations", "pgvector", "workers", "breaker", "queue", "sources", "vector_index"}


@pytest.fixture
def live_worker(db):
    return Worker.objects.create(worker_id="host:1:test", hostname="host", pid=1, status=Worker.Status.IDLE)


@pytest.fixture
def unreachable_connection(db, refused_url):
    """A second connection to the test database's settings, but on a port nothing listens on."""
    params = {**connections["default"].settings_dict, "PORT": urlsplit(refused_url).port}
    broken = DatabaseWrapper(params, alias="unreachable")
    yield broken
    broken.close()


def test_healthz_answers_without_touching_the_database(client):
    # No `db` fixture: pytest-django would make any query here an error.
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.usefixtures("seeded_config", "live_worker")
def test_readyz_is_200_with_every_component_ok(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["components"]) == COMPONENTS
    assert all(set(c) == {"status", "detail"} and c["status"] == "ok" for c in body["components"].values())
    assert body["components"]["breaker"]["detail"] == "not applicable (local model)"
    assert body["components"]["pgvector"]["detail"].startswith("pgvector 0.")
    assert "no HNSW index (0 chunks, under 10,000)" in body["components"]["vector_index"]["detail"]


@pytest.mark.usefixtures("seeded_config")
def test_no_live_worker_or_a_paused_queue_warns_and_strict_turns_it_into_503(client):
    set_config(queue_enabled=False)
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "warn"
    assert body["components"]["workers"]["status"] == "warn"
    assert body["components"]["queue"] == {"status": "warn", "detail": body["components"]["queue"]["detail"]}
    assert "paused" in body["components"]["queue"]["detail"]
    assert client.get("/readyz?strict=1").status_code == 503

    set_config(queue_enabled=True)
    Worker.objects.create(worker_id="host:2:test", hostname="host", pid=2)
    assert client.get("/readyz?strict=1").status_code == 200


@pytest.mark.usefixtures("seeded_config", "live_worker")
def test_an_unapplied_migration_makes_readyz_503_and_names_it(client, sql):
    loader = MigrationLoader(connections["default"])
    app, name = max(node for node in loader.graph.leaf_nodes() if node[0] == "queue_admin")
    sql("DELETE FROM django_migrations WHERE app = %s AND name = %s", [app, name])
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["components"]["migrations"]["status"] == "fail"
    assert f"{app}.{name}" in body["components"]["migrations"]["detail"]
    assert body["components"]["database"]["status"] == "ok"


def test_an_unreachable_database_fails_readiness_without_raising(unreachable_connection):
    ready, body = health.readiness(unreachable_connection)
    assert ready is False and body["status"] == "fail"
    database = body["components"]["database"]
    assert database["status"] == "fail" and database["detail"].startswith("OperationalError")
    assert body["components"]["migrations"] == {
        "status": "fail",
        "detail": "not checked: the database is unreachable",
    }
    assert body["components"]["workers"]["status"] == "warn"


def test_readyz_with_the_database_down_is_a_503_with_json_not_a_500(
    client, unreachable_connection, monkeypatch
):
    monkeypatch.setattr(health, "default_connection", unreachable_connection)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json()["components"]["database"]["status"] == "fail"
