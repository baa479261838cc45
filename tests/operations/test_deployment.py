"""What can be checked of the deployment without Docker (no engine runs on these machines):
compose.yaml's services, the Dockerfile's commands, and the entry points they run."""

import os
import re
import subprocess
import sys

import yaml

from tests.helpers import ROOT

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "x" * 50,
    "ALLOWED_HOSTS": "sidecar.example.com",
    "DATABASE_URL": "postgres://sidecar:secret@db.example.com:5432/sidecar",
}


def test_compose_defines_the_database_a_one_shot_migration_web_and_scalable_workers():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "migrate", "web", "worker"}
    assert services["db"]["image"].startswith("pgvector/pgvector:")
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--no-input"]
    assert services["worker"]["command"] == ["python", "manage.py", "qcluster"]
    for name in ("migrate", "web", "worker"):
        assert services[name]["env_file"] == ".env"
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgres://")
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # uploads sources: the web process writes the files the workers read
    for name in ("web", "worker"):
        assert "uploads:/app/.data/uploads" in services[name]["volumes"]
    # --scale worker=3 needs a worker with no fixed name and no host port
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck_and_gunicorn():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) == 2
    assert re.search(r"^USER sidecar$", dockerfile, re.M)
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    assert 'CMD ["gunicorn", "embedding_site.wsgi:application"' in dockerfile


def run(*command, env=None):
    return subprocess.run(
        command, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120
    )


def test_the_image_entry_points_start_with_production_settings(tmp_path):
    # collectstatic as the image build runs it (into a temporary STATIC_ROOT)
    result = run(
        sys.executable, "-c",
        "import os, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'embedding_site.settings'); "
        "django.setup(); from django.conf import settings; from django.core.management import call_command; "
        f"settings.STATIC_ROOT = {str(tmp_path)!r}; call_command('collectstatic', '--no-input', verbosity=0)",
        env=PRODUCTION_ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "staticfiles.json").exists()  # whitenoise's manifest
    # gunicorn loads the WSGI application with those settings
    result = run(
        sys.executable,
        "-m",
        "gunicorn",
        "--check-config",
        "embedding_site.wsgi:application",
        env=PRODUCTION_ENV,
    )
    assert result.returncode == 0, result.stderr
    # the worker's command exists and parses its arguments
    result = run(sys.executable, "manage.py", "qcluster", "--help", env=PRODUCTION_ENV)
    assert result.returncode == 0 and "Starts a Django Q Cluster" in result.stdout
