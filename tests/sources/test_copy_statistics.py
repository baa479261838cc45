"""A copy (attach, resync) leaves the planner statistics that know the source's new documents:
without them the triggers' joins by key read all of the source's documents on every write."""

import pytest

from queue_admin import sources

pytestmark = pytest.mark.django_db


def test_a_copy_leaves_statistics_that_know_the_new_source(blog_posts, sql):
    source = sources.attach_table(sources.TableRequest("public.blog_post", "{title}: {body}"), name="blog")
    (common_values,) = sql(
        "SELECT most_common_vals::text FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'source_documents' "
        "AND attname = 'source_id'"
    )[0]
    assert str(source.pk) in common_values.strip("{}").split(",")
