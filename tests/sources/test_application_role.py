"""The application's own database role, with rights on its table and nothing else, writes an
attached table by every kind of write: the triggers run as Sidecar's role, so the documents
follow, and the application's role still cannot read Sidecar's tables."""

import uuid

import psycopg
import pytest
from django.db import connection

from documents.models import Source, SourceDocument
from queue_admin import sources
from tests.helpers import database_url, drop_host_tables

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def application_role():
    role = f"blog_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.blog_note (id int PRIMARY KEY, body text)")
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON public.blog_note TO {role}")
    user = connection.settings_dict["USER"]
    yield database_url().replace(f"//{user}:", f"//{role}:", 1)
    drop_host_tables("public.blog_note")
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute(f"DROP ROLE {role}")


def test_the_applications_role_needs_no_grants_on_sidecars_tables(application_role):
    source = sources.attach_table(sources.TableRequest("public.blog_note", "{body}"), name="notes")
    with psycopg.connect(application_role, autocommit=True) as app:
        app.execute("INSERT INTO public.blog_note VALUES (1, 'one'), (2, 'two')")
        app.execute("UPDATE public.blog_note SET body = 'uno' WHERE id = 1")
        app.execute("DELETE FROM public.blog_note WHERE id = 2")
        with app.cursor().copy("COPY public.blog_note FROM STDIN") as copy:
            copy.write_row((3, "three"))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("SELECT 1 FROM source_documents")
    source.refresh_from_db()
    documents = dict(SourceDocument.objects.filter(source=source).values_list("source_key", "content"))
    assert (source.state, documents) == (Source.State.ACTIVE, {"1": "uno", "3": "three"})
