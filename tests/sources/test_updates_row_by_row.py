"""Updates of an attached table are mirrored row by row, and only when a column the document or
the row filter reads has changed."""

import pytest

from documents.models import Source, SourceDocument
from documents.sources import tables
from queue_admin import sources
from queue_admin.models import QueueItem

pytestmark = pytest.mark.django_db


def attach(table="public.blog_post", template="{title}: {body}", **request):
    return sources.attach_table(sources.TableRequest(table, template, **request), name="blog")


def contents(source):
    return dict(SourceDocument.objects.filter(source=source).values_list("source_key", "content"))


def test_saving_every_column_unchanged_writes_and_queues_nothing(blog_posts, sql):
    source = attach(title_column="title")
    before = dict(SourceDocument.objects.filter(source=source).values_list("source_key", "updated_at"))
    items = QueueItem.objects.count()
    # What Django's save() sends: every column, most of them as they were.
    sql("UPDATE public.blog_post SET title = title, body = body, published = published, lang = 'fr'")
    assert (
        dict(SourceDocument.objects.filter(source=source).values_list("source_key", "updated_at")) == before
    )
    assert QueueItem.objects.count() == items


def test_a_column_only_the_filter_reads_moves_rows_out_and_back(blog_posts, sql):
    source = attach(where="lang = 'en' AND published")
    assert set(contents(source)) == {"1", "3"}
    sql("UPDATE public.blog_post SET lang = 'de' WHERE id = 1")
    assert set(contents(source)) == {"3"}
    sql("UPDATE public.blog_post SET lang = 'en', published = true")
    assert set(contents(source)) == {"1", "2", "3"}


def test_postgresql_names_the_columns_a_filter_reads(blog_posts):
    def read_by(where):
        table = tables.describe("public", "blog_post")
        return tables.filter_columns(tables.build_mapping(table, template="{title}", where=where))

    assert read_by("") == []
    assert sorted(read_by("published AND lang <> 'fr'")) == ["lang", "published"]
    assert read_by("blog_post IS NOT NULL") is None  # the whole row: every update is mirrored


def test_keys_swapped_in_one_statement_keep_both_documents(sql):
    sql("""CREATE TABLE public.shelf (id int PRIMARY KEY DEFERRABLE, name text);
           INSERT INTO public.shelf VALUES (1, 'one'), (2, 'two')""")
    source = attach("public.shelf", "{name}")
    sql("UPDATE public.shelf SET id = 3 - id")
    assert contents(source) == {"1": "two", "2": "one"}


def test_an_update_after_a_template_column_is_dropped_succeeds_and_breaks_the_source(blog_posts, sql):
    source = attach()
    sql("ALTER TABLE public.blog_post DROP COLUMN body")
    assert sql("UPDATE public.blog_post SET lang = 'fr' WHERE id = 1") == 1
    source.refresh_from_db()
    assert source.state == Source.State.BROKEN and "body" in source.state_reason


def test_a_row_moved_to_another_partition_moves_its_document(sql):
    sql("""CREATE TABLE public.ticket (region text, id int, body text, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
           CREATE TABLE public.ticket_eu PARTITION OF public.ticket FOR VALUES IN ('eu');
           CREATE TABLE public.ticket_us PARTITION OF public.ticket FOR VALUES IN ('us');
           INSERT INTO public.ticket VALUES ('eu', 1, 'one'), ('us', 2, 'two')""")
    source = attach("public.ticket", "{body}")
    sql("UPDATE public.ticket SET body = 'uno' WHERE id = 1")
    assert contents(source) == {'["eu", 1]': "uno", '["us", 2]': "two"}
    sql("UPDATE public.ticket SET region = 'us', body = 'moved' WHERE id = 1")
    assert contents(source) == {'["us", 1]': "moved", '["us", 2]': "two"}


def test_without_the_right_to_make_a_temporary_view_every_update_is_mirrored(blog_posts, sql):
    table = tables.describe("public", "blog_post")
    mapping = tables.build_mapping(table, template="{title}", where="published")
    database = sql("SELECT current_database()")[0][0]
    sql(f'REVOKE TEMP ON DATABASE "{database}" FROM PUBLIC; CREATE ROLE sidecar_no_temp')
    sql("GRANT SELECT ON public.blog_post TO sidecar_no_temp; SET LOCAL ROLE sidecar_no_temp")
    assert tables.filter_columns(mapping) is None
