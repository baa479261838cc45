"""An uploads source: files and .zip archives of them become documents; uploading a name again
replaces that document's text; every refused file or zip entry is reported with its reason and
nothing of it is kept, inside the uploads folder or outside it."""

import os
import zipfile

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_q.models import OrmQ

from documents.models import Source, SourceDocument
from documents.sources import uploads
from queue_admin import file_sources, sources
from tests.parsing.test_pdf import OUTLINE, make_pdf
from tests.sources.test_archives import make_zip

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]

GUIDE = "# Guide\n\n## Install\n\nRun pip install sidecar on a machine with Python 3.11 or newer.\n"


@pytest.fixture(autouse=True)
def upload_dir(tmp_path, settings):
    settings.SOURCE_UPLOAD_DIR = tmp_path / "uploads"
    return settings.SOURCE_UPLOAD_DIR


@pytest.fixture
def inbox():
    return file_sources.attach("uploads", [], name="inbox")


@pytest.fixture
def originals(tmp_path):
    folder = tmp_path / "originals"
    folder.mkdir()
    make_pdf(folder / "manual.pdf", outline=OUTLINE, title="Operator's Manual")
    (folder / "guide.md").write_text(GUIDE)
    return folder


def documents_of(source):
    return {d.source_key: d for d in SourceDocument.objects.filter(source=source)}


def upload_and_sync(source, *paths):
    upload = file_sources.upload_files(source, list(paths))
    return upload, file_sources.run_sync(source)


def test_uploaded_files_become_documents_with_their_structure(inbox, originals):
    upload, report = upload_and_sync(inbox, originals / "manual.pdf", originals / "guide.md")
    assert upload.taken == ["manual.pdf", "guide.md"] and upload.refused == []
    assert (report.seen, report.new, report.failed) == (2, 2, 0)
    docs = documents_of(inbox)
    assert docs["manual.pdf"].title == "Operator's Manual" and docs["manual.pdf"].metadata["pages"] == 7
    assert [(s["page"], s["heading"]) for s in docs["manual.pdf"].sections][2] == (
        3,
        "Installation › Proxies",
    )
    assert docs["guide.md"].title == "Guide"
    assert uploads.waiting(file_sources.upload_root(), inbox.pk) == 0


def test_uploading_a_name_again_replaces_that_documents_text(inbox, originals, tmp_path):
    upload_and_sync(inbox, originals / "guide.md")
    before = documents_of(inbox)["guide.md"]
    again = tmp_path / "again" / "guide.md"
    again.parent.mkdir()
    again.write_text(GUIDE.replace("3.11", "3.12"))
    _, report = upload_and_sync(inbox, again)
    after = documents_of(inbox)
    assert (report.new, report.changed) == (0, 1)
    assert list(after) == ["guide.md"] and after["guide.md"].id == before.id
    assert "3.12" in after["guide.md"].content


def test_a_zip_is_taken_in_entry_by_entry_and_bad_entries_are_reported(
    inbox, originals, tmp_path, upload_dir
):
    link = zipfile.ZipInfo("docs/passwd.txt")
    link.create_system = 3
    link.external_attr = 0o120777 << 16
    archive = make_zip(
        tmp_path / "bundle.zip",
        {
            "docs/": b"",
            "docs/manual.pdf": (originals / "manual.pdf").read_bytes(),
            "docs/deep/guide.md": GUIDE.encode(),
            "../escape.md": b"# Out\n\nshould never be written",
            "/etc/absolute.md": b"# Abs\n\nnever",
            link: b"/etc/passwd",
            "tool.exe": b"MZ binary",
            "docs/.hidden.md": b"# Hidden",
            "__MACOSX/docs/._manual.pdf": b"resource fork",
        },
    )
    upload, report = upload_and_sync(inbox, archive)
    assert upload.taken == ["bundle.zip"]
    assert set(documents_of(inbox)) == {"docs/manual.pdf", "docs/deep/guide.md"}
    reasons = {failure["key"]: failure["reason"] for failure in report.failures}
    assert set(reasons) == {
        "bundle.zip: ../escape.md",
        "bundle.zip: /etc/absolute.md",
        "bundle.zip: docs/passwd.txt",
        "bundle.zip: tool.exe",
        "bundle.zip: docs/.hidden.md",
    }
    assert "unsupported type; supported: PDF" in reasons["bundle.zip: tool.exe"]
    assert reasons["bundle.zip: docs/passwd.txt"] == "a symbolic link"
    assert report.failed == 5
    kept = sorted(str(p.relative_to(upload_dir)) for p in upload_dir.rglob("*") if p.is_file())
    assert kept == [f"{inbox.pk}/files/docs/deep/guide.md", f"{inbox.pk}/files/docs/manual.pdf"]
    assert not (upload_dir.parent / "escape.md").exists() and not (upload_dir / "escape.md").exists()


def test_a_zip_bomb_is_refused_whole_and_nothing_is_extracted(inbox, tmp_path, upload_dir):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("zeros.txt", "w", force_zip64=True) as entry:
            for _ in range(120):
                entry.write(bytes(1024 * 1024))
    _, report = upload_and_sync(inbox, bomb)
    assert [f["key"] for f in report.failures] == ["bomb.zip"]
    assert "refused" in report.failures[0]["reason"]
    assert documents_of(inbox) == {}
    assert [p for p in upload_dir.rglob("*") if p.is_file()] == []


def test_a_damaged_zip_is_reported(inbox, tmp_path):
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(b"PK\x03\x04 this is not really a zip")
    _, report = upload_and_sync(inbox, damaged)
    assert report.failures == [{"key": "damaged.zip", "reason": "refused: not a zip file, or a damaged one"}]


def test_unsupported_hidden_and_too_large_files_are_refused_at_once_and_not_kept(
    inbox, originals, tmp_path, settings, upload_dir
):
    settings.SOURCE_MAX_FILE_MB = 1
    (tmp_path / "tool.exe").write_bytes(b"MZ")
    (tmp_path / ".env").write_text("SECRET=1")
    (tmp_path / "huge.txt").write_bytes(b"a" * (1024 * 1024 + 1))
    upload = file_sources.upload_files(
        inbox, [tmp_path / "tool.exe", tmp_path / ".env", tmp_path / "huge.txt", originals / "guide.md"]
    )
    refused = dict(upload.refused)
    assert upload.taken == ["guide.md"]
    assert refused["tool.exe"].startswith("unsupported type; supported: PDF (.pdf)")
    assert "hidden file" in refused[".env"]
    assert "over the 1 MB limit" in refused["huge.txt"]
    batch = uploads.pending_batches(upload_dir, inbox.pk)
    assert [p.name.split("-", 1)[1] for p in batch[0].iterdir()] == ["guide.md"]


def test_an_upload_over_the_total_limit_is_refused_file_by_file(inbox, tmp_path, settings):
    settings.SOURCE_UPLOAD_MAX_MB = 1
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_bytes(b"x" * 700_000)
    upload = file_sources.upload_files(inbox, [tmp_path / "a.txt", tmp_path / "b.txt"])
    assert upload.taken == ["a.txt"]
    assert upload.refused == [("b.txt", uploads.upload_too_large())]


def test_an_upload_that_is_still_being_written_is_not_taken_in(inbox, originals, upload_dir):
    with uploads.Batch(upload_dir, inbox.pk) as batch:
        with open(originals / "guide.md", "rb") as file:
            batch.add("guide.md", file, 10_000, 10_000)
        report = file_sources.run_sync(inbox)
        assert report.seen == 0 and documents_of(inbox) == {}
        batch.hand_over()
    report = file_sources.run_sync(inbox)
    assert report.new == 1 and set(documents_of(inbox)) == {"guide.md"}


def test_a_sync_that_ends_with_uploads_waiting_queues_the_next(inbox, originals, monkeypatch):
    """An upload arriving while a sync runs: its own sync task finds the source taken, so the
    running sync, ending, queues one more."""
    real_sync = file_sources.file_sync.sync

    def upload_meanwhile(*args, **kwargs):
        file_sources.upload_files(inbox, [originals / "guide.md"])
        assert file_sources.run_sync(inbox) is None  # the upload's own sync: the source is taken
        return real_sync(*args, **kwargs)

    monkeypatch.setattr(file_sources.file_sync, "sync", upload_meanwhile)
    report = file_sources.run_sync(inbox)
    assert report.seen == 0
    assert OrmQ.objects.count() == 1
    monkeypatch.undo()
    assert file_sources.run_sync(inbox).new == 1


def test_detaching_removes_the_uploaded_files(inbox, originals, upload_dir):
    upload_and_sync(inbox, originals / "guide.md")
    assert (upload_dir / str(inbox.pk) / "files" / "guide.md").is_file()
    sources.detach(inbox)
    assert not Source.objects.filter(pk=inbox.pk).exists()
    assert not (upload_dir / str(inbox.pk)).exists()


def test_an_uploads_source_takes_no_path_and_other_sources_take_no_uploads(tmp_path, originals):
    with pytest.raises(sources.SourceError, match="takes no path"):
        file_sources.attach("uploads", [str(tmp_path)], name="inbox")
    folder = file_sources.attach("folder", [str(originals)], name="share")
    with pytest.raises(sources.SourceError, match="cannot be uploaded"):
        file_sources.upload_files(folder, [originals / "guide.md"])


def test_the_shell_attaches_an_uploads_source_and_uploads_to_it(originals, tmp_path, capsys):
    call_command("source", "attach", "--kind", "uploads", "--name", "inbox")
    assert "source upload inbox FILE" in capsys.readouterr().out
    (tmp_path / "tool.exe").write_bytes(b"MZ")
    call_command("source", "upload", "inbox", str(originals / "manual.pdf"), str(tmp_path / "tool.exe"))
    captured = capsys.readouterr()
    assert "refused: tool.exe: unsupported type" in captured.err
    assert "Synced inbox: 1 seen, 1 new, 0 changed, 0 removed, 0 failed." in captured.out
    with pytest.raises(CommandError, match="Nothing was uploaded"):
        call_command("source", "upload", "inbox", str(tmp_path / "tool.exe"))
    assert os.listdir(tmp_path / "uploads" / str(Source.objects.get(name="inbox").pk) / "incoming") == []
