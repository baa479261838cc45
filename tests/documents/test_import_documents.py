"""Importing documents: the service, the command and the admin.

Every row is checked before anything is written; bad rows are listed with their file line
numbers and nothing is written; good files land in one transaction and the enqueue triggers
queue them; a big file streams.
"""

import csv
import gzip
import json
import re
import tracemalloc
import uuid
from io import StringIO

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from console.admin import import_uploads
from documents import importing
from documents.models import SourceDocument
from queue_admin.models import QueueItem

pytestmark = pytest.mark.django_db

IMPORT_URL = "/admin/documents/sourcedocument/import/"
CHANGELIST_URL = "/admin/documents/sourcedocument/"


@pytest.fixture
def write(tmp_path):
    """write(name, text or bytes) → the path of a new file with that content."""

    def make(name: str, content: str | bytes):
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return make


def nothing_written():
    return SourceDocument.objects.count() == 0 and QueueItem.objects.count() == 0


# --- Happy paths -------------------------------------------------------------------------------


def test_a_csv_file_is_imported_and_the_triggers_queue_every_document(write):
    path = write(
        "docs.csv",
        "\ufefftitle,content,metadata\n"  # Excel's "CSV UTF-8" starts with a byte order mark
        'Refunds,"How refunds work.\nSecond paragraph, with a comma.","{""source"": ""wiki""}"\n'
        "\n"  # a blank line is skipped
        "Shipping,Parcels leave within two days.,\n",
    )

    result = importing.import_file(path, "csv")

    assert (result.created, result.updated, result.queued) == (2, 0, 2)
    refunds = SourceDocument.objects.get(title="Refunds")
    assert refunds.content == "How refunds work.\nSecond paragraph, with a comma."
    assert refunds.metadata == {"source": "wiki"}
    assert SourceDocument.objects.get(title="Shipping").metadata == {}
    items = QueueItem.objects.filter(document__in=SourceDocument.objects.all())
    assert sorted(items.values_list("status", flat=True)) == ["pending", "pending"]


def test_a_json_lines_file_is_imported(write):
    lines = [
        {"title": "One", "content": "First text", "metadata": {"lang": "en", "tags": ["a"]}},
        {"content": "Second text without a title"},
    ]
    path = write("docs.ndjson", "\n".join(json.dumps(line) for line in lines) + "\n\n")

    assert importing.detect_format(path.name) == "jsonl"
    result = importing.import_file(path, "jsonl")

    assert (result.created, result.queued) == (2, 2)
    assert SourceDocument.objects.get(title="One").metadata == {"lang": "en", "tags": ["a"]}
    assert SourceDocument.objects.get(content="Second text without a title").title == ""
    assert QueueItem.objects.filter(status="pending").count() == 2


def test_a_gzipped_file_is_read_the_same(write):
    path = write("docs.jsonl.gz", gzip.compress(b'{"content": "zipped text"}\n'))

    assert importing.detect_format(path.name) == "jsonl"
    assert importing.import_file(path, "jsonl").created == 1
    assert SourceDocument.objects.get().content == "zipped text"


def test_a_row_with_the_id_of_an_existing_document_updates_it(write):
    existing = SourceDocument.objects.create(title="Keep me", content="old text", metadata={"v": 1})
    QueueItem.objects.all().delete()  # as if it had been embedded
    new_id = uuid.uuid4()
    path = write(
        "upsert.jsonl",
        json.dumps({"id": str(existing.id), "content": "new text"})  # no title: keep it
        + "\n"
        + json.dumps({"id": str(new_id), "content": "brand new", "title": "Fresh"})
        + "\n",
    )

    report = importing.check_file(path, "jsonl")
    assert (report.rows, report.new, report.updates) == (2, 1, 1)
    assert [row["action"] for row in report.preview] == ["update", "new"]

    result = importing.write_file(path, "jsonl")

    assert (result.created, result.updated, result.queued) == (1, 1, 2)
    existing.refresh_from_db()
    assert (existing.title, existing.content, existing.metadata) == ("Keep me", "new text", {"v": 1})
    assert SourceDocument.objects.get(pk=new_id).title == "Fresh"
    assert QueueItem.objects.filter(document=existing, status="pending").exists()


def test_an_update_that_leaves_the_text_as_it_was_queues_nothing(write):
    existing = SourceDocument.objects.create(title="Old title", content="same text")
    QueueItem.objects.all().delete()
    path = write("retitle.csv", f"id,title,content\n{existing.id},New title,same text\n")

    result = importing.import_file(path, "csv")

    assert (result.created, result.updated, result.queued) == (0, 1, 0)
    existing.refresh_from_db()
    assert existing.title == "New title"
    assert QueueItem.objects.count() == 0


# --- Bad rows: listed with their line numbers, nothing written ------------------------------------

GOOD_CSV_ROW = "Good,A perfectly good document.,\n"
BAD_FILES = {
    # name: (file name, content, expected line, words the message must contain)
    "missing content column": ("a.csv", "title,text\nA,B\n", 1, "no 'content' column"),
    "semicolons between columns": ("a.csv", "title;content\nA;B\n", 1, "separated by ';'"),
    "unknown column": ("a.csv", "title,content,contnet\nA,B,C\n", 1, "Unknown column(s) 'contnet'"),
    "bad JSON metadata in CSV": (
        "a.csv",
        "title,content,metadata\n" + GOOD_CSV_ROW + 'Bad,Text,"{source: wiki}"\n',
        3,
        "metadata is not valid JSON",
    ),
    "metadata that is a list": (
        "a.jsonl",
        '{"content": "fine"}\n{"content": "x", "metadata": ["a", "list"]}\n',
        2,
        "metadata must be a JSON object",
    ),
    "metadata with NaN": (
        "a.jsonl",
        '{"content": "x", "metadata": {"n": NaN}}\n',
        1,
        "NaN is not a JSON number",
    ),
    "metadata with a NUL character": (
        "a.jsonl",
        '{"content": "x", "metadata": {"k": "a\\u0000b"}}\n',
        1,
        "metadata: Metadata at metadata.k: Text contains a NUL byte",
    ),
    "metadata nested a hundred deep (JSON Lines)": (
        "a.jsonl",
        '{"content": "x", "metadata": ' + '{"a": ' * 100 + "1" + "}" * 100 + "}\n",
        1,
        "metadata: Metadata nests deeper than 32 levels",
    ),
    "metadata nested a thousand deep (JSON Lines)": (
        "a.jsonl",
        '{"content": "x", "metadata": ' + '{"a": ' * 1000 + "1" + "}" * 1000 + "}\n",
        1,
        "nests too deeply to read",
    ),
    "metadata nested far too deep to parse (CSV)": (
        "a.csv",
        'content,metadata\nx,"' + '{""a"": ' * 100_000 + "1" + "}" * 100_000 + '"\n',
        2,
        "nests too deeply to read",
    ),
    "NUL byte in CSV": ("a.csv", "title,content\nA,before\x00after\n", 2, "NUL byte"),
    "NUL escape in JSON Lines": ("a.jsonl", '{"content": "x\\u0000y"}\n', 1, "NUL byte"),
    "invalid UTF-8 in CSV": (
        "a.csv",
        b"title,content\nGood,fine\nCaf\xe9,Latin-1 text\n",
        3,
        "not valid UTF-8 (byte 0xe9",
    ),
    "invalid UTF-8 in JSON Lines": (
        "a.jsonl",
        b'{"content": "ok"}\n{"content": "caf\xe9"}\n',
        2,
        "not valid UTF-8",
    ),
    "bad UUID": ("a.csv", "id,content\nnot-a-uuid,text\n", 2, "id 'not-a-uuid' is not a UUID"),
    "duplicate id": (
        "a.csv",
        "id,content\n0b7e1a4c-3f0e-4a57-9d5e-2c1f3b8a9d10,one\n0b7e1a4c-3f0e-4a57-9d5e-2c1f3b8a9d10,two\n",
        3,
        "appears again (first on line 2)",
    ),
    "title too long": (
        "a.csv",
        "title,content\n" + "t" * 501 + ",text\n",
        2,
        "at most 500 characters (it has 501)",
    ),
    "malformed JSON Lines line": ("a.jsonl", '{"content": "ok"}\n{"content": "no end\n', 2, "not valid JSON"),
    "a JSON line that is not an object": ("a.jsonl", '["content"]\n', 1, "must be a JSON object"),
    "unknown JSON field": ("a.jsonl", '{"content": "x", "body": "y"}\n', 1, "unknown field(s) 'body'"),
    "JSON content that is not text": (
        "a.jsonl",
        '{"content": 42}\n',
        1,
        "content must be text, not a number",
    ),
    "empty content": ("a.csv", "title,content\nA,   \n", 2, "content is empty"),
    "missing content in a JSON line": ("a.jsonl", '{"title": "x"}\n', 1, "has no 'content'"),
    "too few fields": ("a.csv", "title,content,metadata\nA,B\n", 2, "has 2 fields but the header has 3"),
    "unterminated quote": ("a.csv", 'title,content\nA,"never closed\nB,C\n', 2, "not valid CSV"),
    "empty CSV file": ("a.csv", "", None, "The file is empty"),
    "empty JSON Lines file": ("a.jsonl", "", None, "The file is empty"),
    "CSV header without rows": ("a.csv", "title,content\n", None, "no documents"),
    "UTF-16 file": ("a.csv", "title,content\nA,B\n".encode("utf-16"), None, "UTF-16"),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_a_bad_row_is_listed_with_its_line_and_nothing_is_written(write, case):
    name, content, line, words = BAD_FILES[case]
    path = write(name, content)
    file_format = importing.detect_format(name)

    report = importing.check_file(path, file_format)

    assert not report.ok
    assert any(problem.line == line and words in problem.message for problem in report.problems), [
        str(p) for p in report.problems
    ]
    with pytest.raises(importing.ImportRefused) as refused:
        importing.import_file(path, file_format)
    assert refused.value.problems == report.problems
    assert nothing_written()


def test_line_numbers_count_the_physical_lines_of_multi_line_fields(write):
    path = write(
        "multi.csv",
        'title,content\nA,"line one\nline two\nline three"\nB,"also\ntwo lines"\nC,bad\x00row\n',
    )

    report = importing.check_file(path, "csv")

    assert [problem.line for problem in report.problems] == [7]
    assert report.rows == 3 and report.new == 2


def test_every_bad_row_is_counted_but_the_list_is_capped(write):
    rows = "".join(f"Row {n},\n" for n in range(250))  # 250 rows with empty content
    path = write("many.csv", "title,content\n" + rows + "Good,text\n")

    report = importing.check_file(path, "csv")

    assert report.problem_count == 250
    assert len(report.problems) == importing.MAX_LISTED_PROBLEMS
    assert report.problems[0].line == 2 and report.problems[-1].line == 101
    assert (report.rows, report.new) == (251, 1)


def test_a_file_that_changed_after_its_check_is_refused_whole(write):
    path = write("docs.csv", "title,content\nA,one\nB,two\n")
    assert importing.check_file(path, "csv").ok
    path.write_text("title,content\nA,one\nB,\n")

    with pytest.raises(importing.ImportRefused, match="bad rows") as refused:
        importing.write_file(path, "csv")
    assert [problem.line for problem in refused.value.problems] == [3]
    assert nothing_written()


def test_updates_can_be_refused_and_then_nothing_is_written(write):
    existing = SourceDocument.objects.create(content="original")
    path = write("docs.csv", f"id,content\n,a new one\n{existing.id},overwritten\n")

    with pytest.raises(importing.ImportRefused, match="Line 3 has the id of an existing document"):
        importing.write_file(path, "csv", allow_updates=False)

    existing.refresh_from_db()
    assert existing.content == "original"
    assert SourceDocument.objects.count() == 1


def test_the_format_comes_from_the_name_or_is_given():
    assert importing.detect_format("Export.CSV") == "csv"
    assert importing.detect_format("docs.jsonl") == "jsonl"
    assert importing.detect_format("docs.txt", "csv") == "csv"
    with pytest.raises(importing.UnknownFormat, match="Cannot tell the format of 'docs.txt'"):
        importing.detect_format("docs.txt")


# --- A big file streams -------------------------------------------------------------------------


@pytest.mark.slow
def test_a_50000_row_file_imports_with_memory_bounded_well_below_its_size(tmp_path):
    path = tmp_path / "big.csv"
    text = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. " * 6
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["title", "content", "metadata"])
        for n in range(50_000):
            writer.writerow([f"Document {n}", f"{n}. {text}", json.dumps({"n": n})])
    size = path.stat().st_size
    assert size > 20_000_000  # big enough that loading it whole could not hide under the bound

    tracemalloc.start()
    try:
        result = importing.import_file(path, "csv")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (result.created, result.queued) == (50_000, 50_000)
    assert SourceDocument.objects.count() == 50_000
    assert QueueItem.objects.filter(status="pending").count() == 50_000
    # One batch of rows at a time (about 0.5 MB of text here), not the file.
    assert peak < size / 5, f"peak {peak:,} bytes for a {size:,}-byte file"


# --- The command ---------------------------------------------------------------------------------


def test_the_command_imports_and_prints_a_summary(write):
    path = write("docs.csv", "title,content\nA,one\nB,two\n")
    out, err = StringIO(), StringIO()

    call_command("import_documents", str(path), stdout=out, stderr=err)

    assert "2 documents: 2 new, 0 updates." in out.getvalue()
    assert "Imported 2 documents (2 created, 0 updated); 2 queued for embedding." in out.getvalue()
    assert "checking" in err.getvalue() and "importing" in err.getvalue()  # the progress bars
    assert SourceDocument.objects.count() == 2


def test_the_command_lists_bad_rows_and_exits_non_zero_writing_nothing(write):
    path = write("docs.jsonl", '{"content": "good"}\n{"content": ""}\n{oops}\n')
    err = StringIO()

    with pytest.raises(CommandError, match=r"2 problem\(s\) in docs.jsonl \(3 rows\); nothing was written"):
        call_command("import_documents", str(path), stdout=StringIO(), stderr=err)

    assert "line 2: content is empty" in err.getvalue()
    assert "line 3: not valid JSON" in err.getvalue()
    assert nothing_written()


def test_the_command_dry_run_writes_nothing(write):
    path = write("docs.csv", "title,content\nA,one\n")
    out = StringIO()

    call_command("import_documents", str(path), "--dry-run", stdout=out, stderr=StringIO())

    assert "1 documents: 1 new, 0 updates." in out.getvalue() and "Dry run" in out.getvalue()
    assert nothing_written()


def test_the_command_needs_a_known_format_and_an_existing_file(write, tmp_path):
    path = write("docs.txt", '{"content": "x"}\n')
    with pytest.raises(CommandError, match="--format"):
        call_command("import_documents", str(path), stderr=StringIO())
    call_command("import_documents", str(path), "--format", "jsonl", stdout=StringIO(), stderr=StringIO())
    assert SourceDocument.objects.count() == 1

    with pytest.raises(CommandError, match="is not a file"):
        call_command("import_documents", str(tmp_path / "missing.csv"))


# --- The admin -------------------------------------------------------------------------------------


@pytest.fixture
def uploads(tmp_path, monkeypatch):
    """Uploaded files go to a folder of this test's own, so the test can see what is left."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    monkeypatch.setattr(import_uploads, "upload_dir", lambda: folder)
    return folder


def upload(client, name, content, file_format=""):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = content.encode() if isinstance(content, str) else content
    return client.post(IMPORT_URL, {"format": file_format, "file": SimpleUploadedFile(name, data)})


def messages_of(response):
    return [str(message) for message in response.context["messages"]] if response.context else []


@pytest.mark.parametrize(
    "value, expected",
    [
        ("lots", "DOCUMENT_IMPORT_MAX_BYTES must be a whole number"),
        ("10", "DOCUMENT_IMPORT_MAX_BYTES=10 is out of range"),
    ],
)
def test_a_bad_upload_limit_stops_start_up_with_the_fix(value, expected):
    from tests.helpers import PRODUCTION_ENV, manage

    result = manage("check", env_overrides={**PRODUCTION_ENV, "DOCUMENT_IMPORT_MAX_BYTES": value})
    assert result.returncode != 0
    assert expected in result.stderr


def test_the_documents_list_has_an_import_button(admin_client):
    page = admin_client.get(CHANGELIST_URL)
    assert f'href="{IMPORT_URL}"' in page.content.decode()
    assert admin_client.get(IMPORT_URL).status_code == 200


def test_a_file_with_bad_rows_shows_them_in_the_preview_and_cannot_be_imported(admin_client, uploads):
    response = upload(admin_client, "docs.csv", "title,content,metadata\nA,fine,\nB,text,[1]\nC,,\n")
    assert response.status_code == 302
    preview_url = response["Location"]
    assert re.fullmatch(IMPORT_URL + r"[\w-]+/", preview_url)

    page = admin_client.get(preview_url)
    html = page.content.decode()
    assert "<td>3</td><td>metadata must be a JSON object" in html
    assert "<td>4</td><td>content is empty" in html
    assert 'name="confirm"' not in html

    admin_client.post(preview_url, {"confirm": "1"})  # a forged confirmation changes nothing
    assert nothing_written()


def test_a_good_file_is_previewed_then_imported_on_confirmation(admin_client, uploads):
    existing = SourceDocument.objects.create(title="Old", content="old text")
    content = f"id,title,content\n{existing.id},Updated,new text\n,Added,another text\n"
    preview_url = upload(admin_client, "docs.csv", content)["Location"]
    assert len(list(uploads.iterdir())) == 1  # the upload waits on disk, not in the session

    html = admin_client.get(preview_url).content.decode()
    assert "<strong>2</strong> rows in docs.csv" in html
    assert "<strong>1</strong> new document" in html and "<strong>1</strong> update" in html
    assert "<td>update</td><td>Updated</td>" in html and "<td>new</td><td>Added</td>" in html
    assert SourceDocument.objects.count() == 1  # nothing written by the preview

    response = admin_client.post(preview_url, {"confirm": "1"}, follow=True)

    assert response.redirect_chain[-1][0] == CHANGELIST_URL
    assert "Imported 2 documents (1 new, 1 updated); they are queued for embedding." in messages_of(response)
    existing.refresh_from_db()
    assert existing.content == "new text"
    assert SourceDocument.objects.filter(title="Added").exists()
    assert QueueItem.objects.filter(status="pending").count() == 2
    assert list(uploads.iterdir()) == []  # the temporary file is gone

    again = admin_client.post(preview_url, {"confirm": "1"}, follow=True)  # a second click
    assert any("unknown or has expired" in m for m in messages_of(again))
    assert SourceDocument.objects.count() == 2


def test_cancel_deletes_the_upload_and_writes_nothing(admin_client, uploads):
    preview_url = upload(admin_client, "docs.jsonl", '{"content": "x"}\n')["Location"]

    response = admin_client.post(preview_url, {"cancel": "1"}, follow=True)

    assert any("cancelled" in m for m in messages_of(response))
    assert list(uploads.iterdir()) == []
    assert nothing_written()


def test_a_tampered_or_another_users_token_is_refused(admin_client, uploads, django_user_model):
    preview_url = upload(admin_client, "docs.csv", "content\nsecret text\n")["Location"]

    tampered = admin_client.get(preview_url.rstrip("/") + "x/", follow=True)
    assert any("unknown or has expired" in m for m in messages_of(tampered))

    other = django_user_model.objects.create_superuser("other-admin", "o@example.com", "pw")
    other_client = Client()
    other_client.force_login(other)
    stolen = other_client.post(preview_url, {"confirm": "1"}, follow=True)
    assert any("unknown or has expired" in m for m in messages_of(stolen))
    assert "secret text" not in stolen.content.decode()
    assert nothing_written()
    assert len(list(uploads.iterdir())) == 1  # still there for its owner


def test_an_upload_over_the_size_limit_is_refused_and_not_kept(admin_client, uploads, settings):
    settings.DOCUMENT_IMPORT_MAX_BYTES = 1024

    response = upload(admin_client, "big.csv", "title,content\n" + "A,text\n" * 500)

    assert response.status_code == 200
    assert "The file is larger than the 1.0\xa0KB limit." in response.content.decode()
    assert list(uploads.iterdir()) == []


def test_an_unrecognised_file_name_asks_for_the_format(admin_client, uploads):
    response = upload(admin_client, "docs.txt", "content\nx\n")
    assert "Cannot tell the format of" in response.content.decode()
    assert list(uploads.iterdir()) == []

    chosen = upload(admin_client, "docs.txt", "content\nx\n", file_format="csv")
    assert chosen.status_code == 302


def test_the_upload_is_protected_against_cross_site_requests(admin_user, uploads):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    response = upload(client, "docs.csv", "content\nx\n")

    assert response.status_code == 403
    assert list(uploads.iterdir()) == []


def _staff(username, *codenames):
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="documents", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


def test_only_users_who_may_add_documents_can_import(client, uploads):
    for url in (IMPORT_URL, IMPORT_URL + "some-token/"):
        anonymous = client.get(url)
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")

    viewer = _staff("viewer", "view_sourcedocument")
    assert f'href="{IMPORT_URL}"' not in viewer.get(CHANGELIST_URL).content.decode()
    for url in (IMPORT_URL, IMPORT_URL + "some-token/"):
        assert viewer.get(url).status_code == 403
        assert viewer.post(url).status_code == 403
    assert upload(viewer, "docs.csv", "content\nx\n").status_code == 403
    assert list(uploads.iterdir()) == []


def test_a_user_who_may_add_but_not_change_cannot_update_existing_documents(uploads):
    existing = SourceDocument.objects.create(content="original")
    adder = _staff("adder", "view_sourcedocument", "add_sourcedocument")
    preview_url = upload(adder, "docs.csv", f"id,content\n{existing.id},overwritten\n")["Location"]

    html = adder.get(preview_url).content.decode()
    assert "you may add documents but not change them" in html
    assert 'name="confirm"' not in html
    refused = adder.post(preview_url, {"confirm": "1"}, follow=True)  # confirmed all the same
    assert any("updating documents is not allowed" in m for m in messages_of(refused))
    existing.refresh_from_db()
    assert existing.content == "original"
    assert SourceDocument.objects.count() == 1

    new_only = upload(adder, "new.csv", "content\nnew text\n")["Location"]
    adder.post(new_only, {"confirm": "1"})
    assert SourceDocument.objects.filter(content="new text").exists()


def test_queue_operators_may_import(uploads):
    from django.contrib.auth.models import Group

    operator = User.objects.create_user("operator", password="pw", is_staff=True)
    operator.groups.add(Group.objects.get(name="Queue operators"))
    client = Client()
    client.force_login(operator)

    preview_url = upload(client, "docs.csv", "content\nfrom an operator\n")["Location"]
    client.post(preview_url, {"confirm": "1"})

    assert SourceDocument.objects.filter(content="from an operator").exists()
    assert reverse("admin:documents_sourcedocument_import") == IMPORT_URL
