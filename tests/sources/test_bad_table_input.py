"""Bad input when attaching a table: each a clear message, nothing written, nothing else stopped."""

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied

from documents.models import Source, SourceDocument
from documents.sources.tables import TableSourceError
from queue_admin import sources
from tests.helpers import run_sql as run

pytestmark = pytest.mark.django_db


@pytest.fixture
def tables():
    run("""CREATE TABLE public.product (sku text PRIMARY KEY, name text, photo bytea, price numeric);
           CREATE TYPE public.dimension AS (w int, h int);
           CREATE TABLE public.crate (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), label text,
                                      sizes public.dimension[]);
           CREATE TABLE public.log_line (at timestamptz, message text);
           INSERT INTO public.product VALUES ('A-1', 'Chair', '\\x00ff', 10), ('A-2', 'Desk', NULL, 99.5);
           INSERT INTO public.log_line VALUES (now(), 'hello')""")


def attempt(table="public.product", template="{name}", **extra):
    request = {"table": table, "template": template}
    request.update({k: v for k, v in extra.items() if k in ("title_column", "metadata_columns", "where")})
    return sources.attach_table(
        sources.TableRequest(**request), name=extra.get("name", "shop"), user=extra.get("user")
    )


def refused(match, **kwargs):
    before = (Source.objects.count(), SourceDocument.objects.count(), triggers())
    with pytest.raises((TableSourceError, sources.SourceError, PermissionDenied), match=match):
        attempt(**kwargs)
    assert (Source.objects.count(), SourceDocument.objects.count(), triggers()) == before


def triggers():
    return run("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'sidecar_source_%%'")[0][0]


def test_a_table_that_does_not_exist(tables):
    refused("There is no table public.nothing_here", table="public.nothing_here")


def test_a_name_that_is_not_a_table_name(tables):
    refused("is not a table name", table='public."unclosed')


def test_a_table_without_primary_key(tables):
    refused(r"has no primary key.*ADD PRIMARY KEY", table="public.log_line", template="{message}")


def test_a_template_naming_a_missing_column(tables):
    refused(r"names a column 'nmae'.*Its columns: sku, name, photo, price", template="{nmae}")


@pytest.mark.parametrize(
    "template, message",
    [
        ("{name", "never closed"),
        ("name}", "closes nothing"),
        ("{}", "empty"),
        ("no columns", "names no column"),
        ("", "empty"),
    ],
)
def test_a_malformed_template(tables, template, message):
    refused(message, template=template)


def test_a_column_that_cannot_be_rendered(tables):
    refused(r"'photo' holds binary data \(bytea\)", template="{name} {photo}")
    refused(r"'sizes' holds an array of a composite type", table="public.crate", template="{label} {sizes}")


def test_a_title_or_metadata_column_that_does_not_exist(tables):
    refused("The title names a column 'headline'", title_column="headline")
    refused("The metadata names a column 'colour'", metadata_columns=("colour",))


def test_a_filter_that_is_not_a_boolean_expression(tables):
    refused("not a boolean expression", where="price + 1")
    refused("not a boolean expression", where="colour = 'red'")
    refused("not a boolean expression", where="true; DROP TABLE public.product")
    assert run("SELECT count(*) FROM public.product") == [(2,)]


def test_only_a_superuser_may_set_a_filter(tables):
    operator = User.objects.create_user("operator", is_staff=True)
    refused("Only a superuser", where="price > 50", user=operator)
    boss = User.objects.create_superuser("boss")
    assert attempt(where="price > 50", user=boss).rows_done == 2
    assert list(SourceDocument.objects.values_list("source_key", flat=True)) == ["A-2"]


def test_sidecars_own_tables_cannot_be_attached(tables):
    refused("one of Sidecar's own tables", table="source_documents", template="{content}")
    refused("one of Sidecar's own tables", table="embedding_queue", template="{status}")


def test_a_second_source_on_the_same_table_is_refused(tables):
    attempt(name="shop")
    refused("already attached as source 'shop'", name="shop-again", template="{sku}")


def test_a_bad_source_name(tables):
    refused("A source name is", name="My Shop")
    attempt(name="shop")
    refused("already exists", name="shop", table="public.crate", template="{label}")
