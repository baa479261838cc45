"""Settings fail loudly; migrations match the models; the deploy checklist passes."""

import pytest

from tests.helpers import PRODUCTION_ENV, manage


def test_check_deploy_passes_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env_overrides=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_missing_secret_key_in_production_says_how_to_fix():
    env = dict(PRODUCTION_ENV, SECRET_KEY="")
    result = manage("check", env_overrides=env)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr and "DEBUG=1" in result.stderr


def test_production_without_database_url_refuses_to_start():
    result = manage("check", env_overrides=PRODUCTION_ENV | {"DATABASE_URL": ""})
    assert result.returncode != 0
    assert "DATABASE_URL is not set and DEBUG is off" in result.stderr


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("EMBEDDED_DB_PORT", "eighty", "EMBEDDED_DB_PORT must be a whole number"),
        ("EMBEDDED_DB_PORT", "80", "EMBEDDED_DB_PORT=80 is out of range"),
        ("DATABASE_URL", "mysql://u:p@h/db", "DATABASE_URL must point to PostgreSQL"),
        ("ALLOWED_HOSTS", "", "ALLOWED_HOSTS is empty"),
        ("METRICS_TOKEN", "short", "METRICS_TOKEN is shorter than 16 characters"),
        ("METRICS_ALLOWED_IPS", "10.0.0.0/8,intranet", "METRICS_ALLOWED_IPS has 'intranet'"),
        ("SEARCH_TEXT_CONFIG", "english'; --", "is not the name of a PostgreSQL text search configuration"),
    ],
)
def test_bad_settings_fail_with_the_fix_in_the_message(name, value, expected):
    result = manage("check", env_overrides={**PRODUCTION_ENV, name: value})
    assert result.returncode != 0
    assert expected in result.stderr


@pytest.mark.django_db
def test_models_and_migrations_agree():
    from django.core.management import call_command

    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_pgvector_is_installed_and_recent(sql):
    (version,) = sql("SELECT extversion FROM pg_extension WHERE extname = 'vector'")[0]
    assert tuple(int(p) for p in version.split(".")[:2]) >= (0, 7)
