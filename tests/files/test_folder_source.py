"""A folder source: its files become documents; a re-sync reads only what changed, removes what
is gone, and reports each file it could not read, with the reason; hostile files harm nothing."""

import os
import zipfile

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from documents.models import SourceDocument
from queue_admin import file_sources, sources
from queue_admin.models import QueueItem
from tests.parsing.test_docx import make_docx
from tests.parsing.test_pdf import OUTLINE, make_pdf

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]

GUIDE = "# Guide\n\n## Install\n\nRun pip install sidecar on a machine with Python 3.11 or newer.\n"


@pytest.fixture
def share(tmp_path):
    folder = tmp_path / "share"
    (folder / "manuals").mkdir(parents=True)
    make_pdf(folder / "manuals" / "manual.pdf", outline=OUTLINE, title="Operator's Manual")
    make_docx(folder / "handbook.docx")
    (folder / "guide.md").write_text(GUIDE)
    (folder / "notes.txt").write_text("Notes about the backups, kept as plain text.")
    return folder


def documents_of(source):
    return {d.source_key: d for d in SourceDocument.objects.filter(source=source)}


def attach(folder, **options):
    return file_sources.attach("folder", [str(folder)], name="share", **options)


def test_files_become_documents_with_title_text_metadata_and_sections(share):
    source = attach(share)
    report = file_sources.run_sync(source)
    assert (report.seen, report.new, report.failed, report.error) == (4, 4, 0, "")
    docs = documents_of(source)
    assert set(docs) == {"guide.md", "handbook.docx", "manuals/manual.pdf", "notes.txt"}
    manual = docs["manuals/manual.pdf"]
    assert manual.title == "Operator's Manual"
    assert (
        manual.metadata["pages"] == 7
        and manual.metadata["size"] == (share / "manuals/manual.pdf").stat().st_size
    )
    assert manual.metadata["path"] == "manuals/manual.pdf" and len(manual.metadata["sha256"]) == 64
    assert [(s["page"], s["heading"]) for s in manual.sections][2] == (3, "Installation › Proxies")
    assert docs["notes.txt"].title == "notes.txt" and docs["notes.txt"].sections is None
    assert QueueItem.objects.filter(document__source=source).count() == 4  # queued by the triggers


def test_a_resync_skips_unchanged_files_without_reading_them_and_follows_changes(share):
    source = attach(share)
    file_sources.run_sync(source)
    notes = share / "notes.txt"
    # Same size and modified time, other bytes: the listing says unchanged, and it is not read.
    stat = notes.stat()
    notes.write_text("Notes about the restore, kept as plain text.")
    os.utime(notes, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (share / "guide.md").write_text(GUIDE + "\n## Proxies\n\nSet HTTPS_PROXY when the network needs one.\n")
    (share / "handbook.docx").unlink()
    (share / "faq.md").write_text(
        "# FAQ\n\nWhat is Sidecar? It keeps embeddings of your documents in step.\n"
    )
    report = file_sources.run_sync(source)
    assert (report.seen, report.new, report.changed, report.unchanged, report.removed, report.failed) == (
        4, 1, 1, 2, 1, 0,
    )  # fmt: skip
    docs = documents_of(source)
    assert "backups" in docs["notes.txt"].content and "handbook.docx" not in docs
    assert "HTTPS_PROXY" in docs["guide.md"].content


def test_touched_files_with_the_same_bytes_are_not_parsed_again_and_keep_removed_keeps(share):
    source = attach(share, remove_missing=False)
    file_sources.run_sync(source)
    before = documents_of(source)["guide.md"].updated_at
    os.utime(share / "guide.md", (1_000_000_000, 1_000_000_000))
    (share / "notes.txt").unlink()
    report = file_sources.run_sync(source)
    assert (report.changed, report.unchanged, report.removed) == (0, 3, 0)
    docs = documents_of(source)
    assert "notes.txt" in docs and docs["guide.md"].updated_at == before
    assert docs["guide.md"].metadata["modified"].startswith("2001-09-09")  # the new time is kept


def test_each_bad_file_fails_with_its_reason_and_the_others_go_on(share, tmp_path, settings):
    settings.SOURCE_MAX_FILE_MB = 1
    outside = tmp_path / "secret.txt"
    outside.write_text("not for the index")
    (share / "link-out.txt").symlink_to(outside)
    (share / "link-in.md").symlink_to(share / "guide.md")
    (share / "empty.txt").write_bytes(b"")
    (share / "binary.txt").write_bytes(bytes(range(256)) * 40)
    (share / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    (share / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj <<")
    (share / "big.txt").write_text("many words " * 200_000)
    (share / ".hidden.md").write_text("# Hidden\n\nLeft out.")
    source = attach(share)
    report = file_sources.run_sync(source)
    reasons = {failure["key"]: failure["reason"] for failure in report.failures}
    assert reasons["link-out.txt"] == "a symbolic link leading outside the folder: not read"
    assert reasons["empty.txt"] == "empty file"
    assert reasons["binary.txt"].startswith("not text:")
    assert reasons["photo.png"].startswith("unsupported type .png: supported are PDF (.pdf)")
    assert reasons["broken.pdf"].startswith("not a readable PDF")
    assert reasons["big.txt"].startswith("too large:") and "SOURCE_MAX_FILE_MB" in reasons["big.txt"]
    assert report.failed == 6 and report.new == 5  # the four good files and the link inside
    docs = documents_of(source)
    assert set(docs) == {"guide.md", "handbook.docx", "manuals/manual.pdf", "notes.txt", "link-in.md"}
    assert "not for the index" not in " ".join(d.content for d in docs.values())
    source.refresh_from_db()
    assert source.last_sync["failed"] == 6 and source.last_sync["running"] is False


def test_a_changed_file_that_now_fails_keeps_its_document_as_it_was(share):
    source = attach(share)
    file_sources.run_sync(source)
    (share / "guide.md").write_bytes(b"\x00\x01\x02" * 100)
    report = file_sources.run_sync(source)
    assert report.failures == [{"key": "guide.md", "reason": report.failures[0]["reason"]}]
    assert documents_of(source)["guide.md"].content.startswith("# Guide")


def test_include_and_exclude_patterns(share):
    source = attach(share, include=["*.md", "manuals/*"], exclude=["*.pdf"])
    file_sources.run_sync(source)
    assert set(documents_of(source)) == {"guide.md"}


def test_a_sync_out_of_time_goes_on_where_it_stopped(share):
    source = attach(share)
    first = file_sources.run_sync(source, seconds=0)
    assert first.running and first.seen == 1
    assert file_sources.run_sync(source) is None  # another sync holds the source
    source.refresh_from_db()
    rest = file_sources.run_sync(source, continues=first.started_at)
    assert not rest.running and (rest.seen, rest.new) == (4, 4)


def test_a_missing_folder_stops_the_sync_and_removes_nothing(share):
    source = attach(share)
    file_sources.run_sync(source)
    share.rename(share.with_name("moved"))
    report = file_sources.run_sync(source)
    assert "does not exist" in report.error and report.removed == 0
    assert len(documents_of(source)) == 4
    source.refresh_from_db()
    assert source.state == "broken" and "does not exist" in source.state_reason


def test_attach_refuses_what_it_cannot_read(share, settings, tmp_path):
    with pytest.raises(sources.SourceError, match="absolute path"):
        file_sources.attach("folder", ["relative/path"], name="x")
    with pytest.raises(sources.SourceError, match="does not exist"):
        file_sources.attach("folder", [str(share / "nope")], name="x")
    settings.SOURCE_FOLDER_ROOTS = [str(tmp_path / "elsewhere")]
    with pytest.raises(sources.SourceError, match="outside the folders sources may read"):
        attach(share)


def test_the_command_attaches_syncs_and_reports(share, capsys):
    call_command("source", "attach", "--kind", "folder", str(share), "--name", "share")
    out = capsys.readouterr().out
    assert "Synced share: 4 seen, 4 new, 0 changed, 0 removed, 0 failed." in out
    (share / "empty.txt").write_bytes(b"")
    call_command("source", "sync", "share", "--wait")
    out = capsys.readouterr().out
    assert "5 seen, 0 new, 0 changed, 0 removed, 1 failed" in out and "failed: empty.txt: empty file" in out
    with pytest.raises(CommandError, match="takes one path"):
        call_command("source", "attach", "--kind", "folder", "--name", "other")


def test_detaching_a_folder_source_removes_its_documents_and_schedule(share):
    from django_q.models import Schedule

    source = attach(share)
    file_sources.run_sync(source)
    file_sources.set_sync_interval(source, 30)
    assert Schedule.objects.get(name="sidecar-sync-share").minutes == 30
    sources.detach(source)
    assert not SourceDocument.objects.filter(source_key="guide.md").exists()
    assert not Schedule.objects.filter(name="sidecar-sync-share").exists()


@pytest.mark.parametrize("minutes", [-5, 7 * 24 * 60 + 1])
def test_a_refused_sync_interval_changes_nothing(share, minutes):
    from django_q.models import Schedule

    source = attach(share)
    file_sources.set_sync_interval(source, 30)
    with pytest.raises(sources.SourceError, match="1 minute to 7 days"):
        file_sources.set_sync_interval(source, minutes)
    source.refresh_from_db()
    assert source.options["sync_minutes"] == 30
    assert Schedule.objects.get(name="sidecar-sync-share").minutes == 30


def test_a_zip_in_a_folder_is_an_unsupported_type(share):
    with zipfile.ZipFile(share / "bundle.zip", "w") as archive:
        archive.writestr("inner.md", "# Inner\n\ntext")
    report = file_sources.run_sync(attach(share))
    assert report.failures[0]["key"] == "bundle.zip"
    assert report.failures[0]["reason"].startswith("unsupported type .zip")


def test_a_sync_with_debug_on_does_not_keep_every_files_text_in_the_query_log(tmp_path, settings):
    """DEBUG (make demo) makes Django keep each query's text until a web request starts; a
    sync in a worker is no request, so without care it would hold every file's text."""
    from django.db import connection, reset_queries

    folder = tmp_path / "big"
    folder.mkdir()
    for n in range(3):
        (folder / f"letter-{n}.txt").write_text(f"Letter {n}. " + "All is well at the lighthouse. " * 4000)
    source = attach(folder)
    settings.DEBUG = True
    reset_queries()
    report = file_sources.run_sync(source)
    assert report.new == 3
    kept = sum(len(query["sql"]) for query in connection.queries)
    assert kept < 100_000, f"{kept:,} characters of queries kept"
