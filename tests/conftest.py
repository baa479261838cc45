"""Shared fixtures; the plain helper functions tests share are in tests/helpers.py. Tests that
use the database run against the real embedded PostgreSQL with pgvector that `make test` starts
in its own data directory and port (see the Makefile); tests of HTTP providers run against a
fake embedding service on 127.0.0.1 (tests/fault_server.py)."""

import pytest
from django.db import connection

from documents.models import SourceDocument
from tests.batch_server import FakeBatchApi
from tests.fault_server import FakeEmbedder
from tests.helpers import free_port, run_sql

pytest_plugins = ["tests.browser", "tests.s3_server"]


# --- No secret in any log line ------------------------------------------------------------
# Every line the configured log handler writes during the suite (through its scrubbing filter,
# exactly as production would write it) is checked for the secrets the tests configure
# (tests/secrets.py); any leak fails the run at the end, with the lines. Subprocesses' logs are
# not seen here; the tests that start them check their output themselves.
LOG_LEAKS: list[str] = []


def _configured_handlers():
    import logging

    loggers = [logging.getLogger(), logging.getLogger("django"), logging.getLogger("django.server")]
    return {id(h): h for lg in loggers for h in lg.handlers if h.filters}.values()


def pytest_configure(config):
    from tests import secrets

    for handler in _configured_handlers():
        original = handler.format

        def format_and_scan(record, original=original):
            line = original(record)
            if secrets.leaks_in(line):
                LOG_LEAKS.append(line)
            return line

        handler.format = format_and_scan


def pytest_sessionfinish(session, exitstatus):
    if LOG_LEAKS:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_line(f"{len(LOG_LEAKS)} log line(s) carried a configured test secret:", red=True)
        for line in LOG_LEAKS[:20]:
            reporter.write_line(f"  {line[:500]}")
        session.exitstatus = 1


@pytest.fixture
def sql():
    """Run raw SQL as a non-Django writer would (psql, another service); returns rows if any."""
    return run_sql


# A table of "the host application", for attaching as a source.
BLOG_POSTS = """
CREATE TABLE public.blog_post (
  id bigserial PRIMARY KEY, title text NOT NULL, body text, published boolean NOT NULL DEFAULT true,
  lang text DEFAULT 'en', cover bytea);
INSERT INTO public.blog_post (title, body, published) VALUES
  ('Proxies', 'Set HTTPS_PROXY before you start.', true),
  ('Draft', 'Not ready yet.', false),
  ('Backups', 'Copy the data directory nightly.', true);
"""


@pytest.fixture
def blog_posts(db, sql):
    """public.blog_post with three rows (one unpublished); returns its rows. A transactional
    test's flush empties only Sidecar's tables: there the sources are detached and the table
    dropped afterwards."""
    sql(BLOG_POSTS)
    yield sql("SELECT * FROM public.blog_post ORDER BY id")
    if not connection.in_atomic_block:  # else the test's rollback takes it all away
        from documents.models import Source
        from queue_admin import sources

        for source in Source.objects.filter(kind=Source.Kind.TABLE):
            sources.detach(source)
        sql("DROP TABLE IF EXISTS public.blog_post")


@pytest.fixture
def document(db):
    return SourceDocument.objects.create(title="Doc", content="The quick brown fox jumps over the lazy dog.")


@pytest.fixture
def fake_embedder():
    """A fake embedding service on 127.0.0.1 with a fault script (tests/fault_server.py)."""
    with FakeEmbedder() as server:
        yield server


@pytest.fixture
def refused_url():
    """A loopback URL nothing listens on: connecting is refused at once."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def seeded_config(db):
    """The queue settings at their defaults, also after a transactional test's flush emptied
    the table; the workers' settings cache starts cold."""
    from queue_admin import config
    from queue_admin.models import QueueConfig

    QueueConfig.objects.bulk_create(
        [
            QueueConfig(config_key=key, config_value=item.default)
            for key, item in config.SCHEMA.items()
            if not item.by_provider  # as migration 0003: these follow the provider until set
        ],
        ignore_conflicts=True,
    )
    config.forget_cached()
    yield
    config.forget_cached()


@pytest.fixture
def nobody_staff(db):
    """A staff user with no permissions at all: may log in to the admin, may see nothing."""
    from django.contrib.auth.models import User

    return User.objects.create_user("staff-without-permissions", password="pw", is_staff=True)


@pytest.fixture
def fresh_search_caches():
    """Search's per-process caches (coverage, query vectors, providers) empty before and after."""
    from django.core.cache import caches

    from documents import search
    from documents.providers import factory
    from queue_admin import searching

    def clear():
        searching._coverage.clear()
        caches[search.QUERY_EMBEDDING_CACHE].clear()
        factory.get_provider.cache_clear()
        factory.get_previous_provider.cache_clear()

    clear()
    yield
    clear()


@pytest.fixture
def tei_search_service(settings):
    """The configured provider: TEI at a fake service that counts its requests."""
    with FakeEmbedder(dimensions=settings.EMBEDDING_DIMENSIONS) as fake:
        settings.EMBEDDING_PROVIDER, settings.EMBEDDING_MODEL = "tei", "fake-model"
        settings.EMBEDDING_BASE_URL = fake.url
        yield fake


BATCH_API_MODEL = "fake-batch-model"


@pytest.fixture
def batch_api(settings):
    """The configured provider: openai at a fake Batch API service (tests/batch_server.py)."""
    from documents.providers import factory

    with FakeBatchApi(dimensions=settings.EMBEDDING_DIMENSIONS) as fake:
        settings.EMBEDDING_PROVIDER, settings.EMBEDDING_MODEL = "openai", BATCH_API_MODEL
        settings.EMBEDDING_BASE_URL = fake.base_url
        settings.EMBEDDING_HTTP_MAX_RETRY_WAIT_SECONDS = 0.2
        factory.get_provider.cache_clear()
        yield fake
    factory.get_provider.cache_clear()
