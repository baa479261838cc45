"""An uploads source's upload page: files stream to disk and a sync is queued, the request
returns at once; a refused file (type, size, the whole upload's size) is named with its reason
and nothing of it is kept; people who may only look cannot upload, and a request without a
CSRF token keeps nothing."""

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django_q.models import OrmQ

from documents.sources import uploads
from queue_admin import file_sources

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]

GUIDE = b"# Guide\n\n## Install\n\nRun pip install sidecar on a machine with Python 3.11 or newer.\n"


@pytest.fixture(autouse=True)
def upload_dir(tmp_path, settings):
    settings.SOURCE_UPLOAD_DIR = tmp_path / "uploads"
    return settings.SOURCE_UPLOAD_DIR


@pytest.fixture
def inbox():
    return file_sources.attach("uploads", [], name="inbox")


def url(source):
    return reverse("admin:documents_source_upload", args=[source.pk])


def stored(upload_dir) -> list[str]:
    """Every file kept under the uploads folder, the batch number taken off its name."""
    return sorted(p.name.split("-", 1)[-1] for p in upload_dir.rglob("*") if p.is_file())


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_uploading_files_queues_a_sync_and_the_page_shows_progress(admin_client, inbox, upload_dir):
    response = admin_client.post(
        url(inbox),
        {"files": [SimpleUploadedFile("guide.md", GUIDE), SimpleUploadedFile("tool.exe", b"MZ")]},
        follow=True,
    )
    said = messages_of(response)
    assert "Uploaded 1 file to inbox. A worker reads them now; this page shows how far it got." in said
    assert any(m.startswith("tool.exe: unsupported type; supported: PDF (.pdf)") for m in said)
    assert stored(upload_dir) == ["guide.md"]
    assert OrmQ.objects.count() == 1  # the sync, for a worker: nothing was parsed in the request
    page = response.content.decode()
    assert "1 upload waiting for a worker" in page
    assert '<meta http-equiv="refresh" content="3">' in page

    file_sources.run_sync(inbox)  # what the worker does
    page = admin_client.get(url(inbox)).content.decode()
    assert "1 seen, 1 new, 0 changed, 0 removed, 0 failed" in page
    assert "http-equiv" not in page  # done: no more reloading
    assert (
        stored(upload_dir) == ["guide.md"] and (upload_dir / str(inbox.pk) / "files" / "guide.md").is_file()
    )


def test_the_sources_list_links_to_the_upload_page(admin_client, inbox):
    listing = admin_client.get(reverse("admin:documents_source_changelist")).content.decode()
    assert f'href="{url(inbox)}"' in listing


def test_a_file_over_the_size_limit_is_refused_and_not_kept(admin_client, inbox, settings, upload_dir):
    settings.SOURCE_MAX_FILE_MB = 1
    big = SimpleUploadedFile("big.txt", b"a" * (1024 * 1024 + 10))
    response = admin_client.post(
        url(inbox), {"files": [big, SimpleUploadedFile("guide.md", GUIDE)]}, follow=True
    )
    assert any(m.startswith("big.txt: too large:") for m in messages_of(response))
    assert stored(upload_dir) == ["guide.md"]


def test_an_upload_over_the_whole_limit_stops_and_keeps_nothing_of_the_file_that_passed_it(
    admin_client, inbox, settings, upload_dir
):
    settings.SOURCE_UPLOAD_MAX_MB = 1
    first = SimpleUploadedFile("first.txt", b"a" * 700_000)
    second = SimpleUploadedFile("second.txt", b"b" * 700_000)
    response = admin_client.post(url(inbox), {"files": [first, second]}, follow=True)
    assert f"second.txt: {uploads.upload_too_large()}" in messages_of(response)
    assert stored(upload_dir) == ["first.txt"]


def test_nothing_chosen_says_so(admin_client, inbox, upload_dir):
    response = admin_client.post(url(inbox), {}, follow=True)
    assert messages_of(response) == ["Choose one or more files to upload."]
    assert stored(upload_dir) == [] and OrmQ.objects.count() == 0


def test_a_viewer_sees_the_page_but_cannot_upload(inbox, upload_dir):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_source"))
    client = Client()
    client.force_login(user)
    page = client.get(url(inbox))
    assert page.status_code == 200 and 'id="upload-form"' not in page.content.decode()
    assert client.post(url(inbox), {"files": [SimpleUploadedFile("guide.md", GUIDE)]}).status_code == 403
    assert stored(upload_dir) == []


def test_a_post_with_a_wrong_csrf_token_keeps_nothing(inbox, upload_dir):
    """The token is checked after the files were read (it is in the same body): they go."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("root", password="pw"))
    client.cookies["csrftoken"] = "a" * 32
    response = client.post(
        url(inbox), {"csrfmiddlewaretoken": "b" * 32, "files": [SimpleUploadedFile("guide.md", GUIDE)]}
    )
    assert response.status_code == 403
    assert stored(upload_dir) == [] and OrmQ.objects.count() == 0


def test_other_kinds_of_source_have_no_upload_page(admin_client, tmp_path):
    folder = file_sources.attach("folder", [str(tmp_path)], name="share")
    response = admin_client.get(url(folder))
    assert response.status_code == 302 and response.url == reverse("admin:index")
