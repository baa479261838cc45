"""Sidecar's triggers are created and dropped under a short lock timeout: a table that a long
transaction is using makes attaching fail with what to do, and changes nothing."""

import psycopg
import pytest

from documents.models import Source
from documents.sources.tables import TableSourceError
from queue_admin import sources
from tests.helpers import database_url, drop_host_tables

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def busy_table():
    with psycopg.connect(database_url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.busy (id int PRIMARY KEY, body text)")
    with psycopg.connect(database_url()) as holder:
        holder.execute("LOCK TABLE public.busy IN ACCESS EXCLUSIVE MODE")
        yield
        holder.rollback()
    drop_host_tables("public.busy")


def test_attaching_a_table_a_long_transaction_holds_says_to_try_again(busy_table):
    with pytest.raises(TableSourceError, match="a long transaction is using the table. Nothing was changed"):
        sources.attach_table(sources.TableRequest("public.busy", "{body}"), name="busy")
    assert not Source.objects.filter(name="busy").exists()
