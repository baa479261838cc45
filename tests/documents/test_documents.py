"""Document input: bad text or metadata is refused with a clear error and nothing is written."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from documents.models import SourceDocument
from queue_admin.models import QueueItem

pytestmark = pytest.mark.django_db

BAD_CONTENT = {
    "nul byte": ("before\x00after", "NUL byte"),
    "lone surrogate from undecodable bytes": (
        b"caf\xe9 au lait".decode("utf-8", "surrogateescape"),
        "not valid UTF-8",
    ),
    "raw bytes": (b"plain bytes", "not raw bytes"),
}


@pytest.mark.parametrize("case", BAD_CONTENT, ids=list(BAD_CONTENT))
def test_bad_content_is_refused_by_the_model_and_nothing_is_written(case):
    value, message = BAD_CONTENT[case]
    with pytest.raises(ValidationError) as caught:
        SourceDocument.objects.create(title="bad", content=value)
    assert message in str(caught.value.message_dict["content"])
    assert SourceDocument.objects.count() == 0
    assert QueueItem.objects.count() == 0


@pytest.mark.parametrize("metadata", [["a", "list"], "text", 42, None])
def test_metadata_must_be_a_json_object(metadata):
    with pytest.raises(ValidationError) as caught:
        SourceDocument.objects.create(content="fine", metadata=metadata)
    assert "metadata" in caught.value.message_dict
    assert SourceDocument.objects.count() == 0


def test_metadata_that_is_not_an_object_is_refused_by_the_database_too(sql):
    with pytest.raises(IntegrityError, match="source_documents_metadata_is_object"):
        with transaction.atomic():
            sql("INSERT INTO source_documents (content, metadata) VALUES ('x', '[1, 2]')")
    assert SourceDocument.objects.count() == 0


def test_nul_byte_from_raw_sql_is_refused_by_postgresql(sql):
    from django.db import DataError

    with pytest.raises((DataError, ValueError)):
        with transaction.atomic():
            sql("INSERT INTO source_documents (content) VALUES (%s)", ["a\x00b"])
    assert SourceDocument.objects.count() == 0


def test_raw_sql_insert_with_only_content_gets_database_defaults(sql):
    sql("INSERT INTO source_documents (content) VALUES ('just text')")
    doc = SourceDocument.objects.get()
    assert (doc.title, doc.metadata) == ("", {})
    assert doc.created_at is not None and doc.id is not None


def test_a_10_mb_document_is_accepted():
    content = ("lorem ipsum dolor sit amet " * 400_000)[: 10 * 1024 * 1024]
    doc = SourceDocument.objects.create(title="big", content=content)
    doc.refresh_from_db()
    assert len(doc.content) == 10 * 1024 * 1024
    assert QueueItem.objects.filter(document=doc, status="pending").count() == 1


# The add page carries the (empty) chunk inline's management form.
INLINE = {"embeddings-TOTAL_FORMS": "0", "embeddings-INITIAL_FORMS": "0"}


def test_admin_refuses_nul_byte_with_a_message_and_writes_nothing(admin_client):
    response = admin_client.post(
        "/admin/documents/sourcedocument/add/",
        {"title": "t", "content": "bad\x00text", "metadata": "{}", **INLINE},
    )
    assert response.status_code == 200  # the form again, not a redirect
    assert b"Null characters are not allowed" in response.content
    assert SourceDocument.objects.count() == 0


def test_admin_refuses_metadata_that_is_not_an_object(admin_client):
    response = admin_client.post(
        "/admin/documents/sourcedocument/add/",
        {"title": "t", "content": "good text", "metadata": "[1, 2]", **INLINE},
    )
    assert response.status_code == 200
    assert b"Metadata must be a JSON object" in response.content
    assert SourceDocument.objects.count() == 0


def test_admin_adds_a_document_which_is_queued(admin_client):
    response = admin_client.post(
        "/admin/documents/sourcedocument/add/",
        {
            "title": "From the admin",
            "content": "Typed by a person.",
            "metadata": '{"source": "admin"}',
            **INLINE,
        },
    )
    assert response.status_code == 302
    doc = SourceDocument.objects.get()
    assert doc.metadata == {"source": "admin"}
    assert QueueItem.objects.filter(document=doc, status="pending").count() == 1


def test_admin_pages_show_the_development_database_badge(admin_client, settings):
    settings.EMBEDDED_DB = True
    assert b"development database" in admin_client.get("/admin/").content
    settings.EMBEDDED_DB = False
    assert b"development database" not in admin_client.get("/admin/").content


@pytest.mark.parametrize(
    "metadata, problem",
    [
        ({"note": "a\x00b"}, "Metadata at metadata.note: Text contains a NUL byte"),
        ({"bad\x00key": 1}, "Text contains a NUL byte"),
        ({"tags": ["ok", "\ud800"]}, "Metadata at metadata.tags[1]: Text is not valid UTF-8"),
    ],
)
def test_metadata_strings_that_postgresql_cannot_store_are_refused(metadata, problem):
    with pytest.raises(ValidationError) as caught:
        SourceDocument.objects.create(content="fine", metadata=metadata)
    assert problem in " ".join(caught.value.message_dict["metadata"])
    assert not SourceDocument.objects.exists()


def test_metadata_nested_a_thousand_deep_is_refused_with_a_message():
    deep = current = {}
    for _ in range(1000):
        current["child"] = {}
        current = current["child"]
    with pytest.raises(ValidationError) as caught:
        SourceDocument.objects.create(content="fine", metadata=deep)
    assert "nests deeper than 32 levels" in " ".join(caught.value.message_dict["metadata"])
    assert not SourceDocument.objects.exists()
