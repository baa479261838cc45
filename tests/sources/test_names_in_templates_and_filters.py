"""Whatever PostgreSQL accepts when a source is attached keeps working in its triggers: columns
named like PL/pgSQL's own variables, and a filter that names its columns by the table's name;
a filter the triggers could not resolve is refused when attaching."""

import pytest

from documents.models import Source, SourceDocument
from documents.sources.tables import TableSourceError
from queue_admin import sources

pytestmark = pytest.mark.django_db


def contents(source):
    return dict(SourceDocument.objects.filter(source=source).values_list("source_key", "content"))


def test_columns_named_like_plpgsql_variables_are_mirrored(sql):
    sql('CREATE TABLE public.note (id int PRIMARY KEY, found text, "new" text, old text, tg_op text)')
    source = sources.attach_table(
        sources.TableRequest("public.note", "{found} {new} {old} {tg_op}"), name="notes"
    )
    sql("INSERT INTO public.note VALUES (1, 'a', 'b', 'c', 'd'), (2, 'e', 'f', 'g', 'h')")
    sql("UPDATE public.note SET found = 'z' WHERE id = 1")
    sql("DELETE FROM public.note WHERE id = 2")
    source.refresh_from_db()
    assert (source.state, contents(source)) == (Source.State.ACTIVE, {"1": "z b c d"})


def test_a_filter_may_name_its_columns_by_the_tables_name(blog_posts, sql):
    request = sources.TableRequest("public.blog_post", "{title}", where="blog_post.published")
    source = sources.attach_table(request, name="blog")
    sql("INSERT INTO public.blog_post (title, published) VALUES ('New', true)")
    sql("UPDATE public.blog_post SET published = false WHERE id = 1")
    source.refresh_from_db()
    assert (source.state, set(contents(source))) == (Source.State.ACTIVE, {"3", "4"})


def test_a_filter_naming_the_schema_too_is_refused_when_attaching(blog_posts):
    request = sources.TableRequest("public.blog_post", "{title}", where="public.blog_post.published")
    with pytest.raises(TableSourceError, match="row filter is not a boolean expression"):
        sources.attach_table(request, name="blog")
    assert not Source.objects.filter(name="blog").exists()
