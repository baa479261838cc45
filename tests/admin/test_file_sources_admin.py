"""File sources in the admin: "Attach files" (a folder, a bucket, web pages) checks where the
files are, attaches and queues the first sync for a worker, and shows every refusal on the form
with nothing written; a file source's page edits its sync schedule and priority and queues a
sync now; the Sources list and a source's page show the last sync's figures and each failed
file's reason; the Resync action queues a sync for a worker."""

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse
from django_q.models import OrmQ, Schedule

from documents.models import Source, SourceDocument
from queue_admin import file_sources
from queue_admin.sources import SYNC_SCHEDULE_PREFIX

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]

LIST = reverse("admin:documents_source_changelist")
ATTACH = reverse("admin:documents_source_add")


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def form_errors(response, field=None) -> str:
    return " ".join(response.context["form"].errors.get(field or "__all__", []))


def attach_files(client, kind, **fields):
    data = {"name": "share", "priority": "medium", "remove_missing": "on", "sync_minutes": "", **fields}
    return client.post(f"{ATTACH}?kind={kind}", data)


def staff_with(*codenames):
    user = User.objects.create_user("source-staff", password="pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="documents", codename__in=codenames)
    )
    client = Client()
    client.force_login(user)
    return client


def schedule_of(source):
    return Schedule.objects.filter(name=SYNC_SCHEDULE_PREFIX + source.name).first()


@pytest.fixture
def synced(tmp_path):
    (tmp_path / "guide.md").write_text("# Guide\n\nInstall it with pip on any machine with Python.\n")
    (tmp_path / "empty.txt").write_bytes(b"")
    source = file_sources.attach("folder", [str(tmp_path)], name="share")
    file_sources.run_sync(source)
    return source


# --- Attaching ----------------------------------------------------------------------------------


def test_the_list_offers_attach_files_beside_attach_a_table(admin_client):
    listing = text(admin_client.get(LIST))
    assert 'id="attach-table-link"' in listing
    assert f'href="{ATTACH}?kind=files" class="addlink" id="attach-files-link">Attach files</a>' in listing
    choice = admin_client.get(ATTACH, {"kind": "files"})
    assert choice.context["form"] is None  # the kind first
    kinds = dict(choice.context["kind_form"].fields["kind"].choices)
    assert list(kinds) == ["uploads", "folder", "s3", "urls"]
    assert "superusers only" in kinds["folder"]
    folder = admin_client.get(ATTACH, {"kind": "folder"})
    assert {"path", "include", "exclude"} <= set(folder.context["form"].fields)
    assert not {"uri", "urls"} & set(folder.context["form"].fields)
    assert folder.context["form"]["remove_missing"].value() is True  # ticked by default
    assert "table_choices" in admin_client.get(ATTACH).context  # the table page as before


def test_attaching_a_folder_queues_its_first_sync_and_reads_nothing_in_the_request(admin_client, tmp_path):
    (tmp_path / "guide.md").write_text("# Guide\n\nInstall it with pip.\n")
    response = attach_files(
        admin_client, "folder", path=str(tmp_path), include="*.md, *.txt\nnotes/*", exclude="drafts/*"
    )
    assert response.status_code == 302 and response["Location"] == LIST
    source = Source.objects.get(name="share")
    assert source.kind == Source.Kind.FOLDER and source.created_by.username == "admin"
    assert source.options["path"] == str(tmp_path.resolve())
    assert source.options["include"] == ["*.md", "*.txt", "notes/*"] and source.options["exclude"] == [
        "drafts/*"
    ]
    assert source.options["remove_missing"] is True and source.default_priority == "medium"
    assert OrmQ.objects.count() == 1  # the first sync, for a worker
    assert source.last_sync is None and not SourceDocument.objects.filter(source=source).exists()
    assert schedule_of(source) is None  # on demand only
    listing = text(admin_client.get(LIST))
    assert f"Attached folder {tmp_path.resolve()}" in listing and "A worker syncs its files now" in listing


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/no/such/folder/here", "/no/such/folder/here does not exist or is not a folder."),
        ("relative/folder", "Give the folder as an absolute path, not 'relative/folder'."),
    ],
)
def test_a_folder_that_cannot_be_read_is_refused_on_the_form_and_nothing_is_written(
    admin_client, path, error
):
    response = attach_files(admin_client, "folder", path=path)
    assert response.status_code == 200
    assert form_errors(response) == error
    assert error in text(response).replace("&#x27;", "'")
    assert not Source.objects.filter(name="share").exists() and OrmQ.objects.count() == 0


def test_a_name_taken_is_refused_on_its_field(admin_client, synced, tmp_path):
    response = attach_files(admin_client, "folder", path=str(tmp_path))
    assert form_errors(response, "name") == "There is already a source named 'share'."
    assert Source.objects.filter(name="share").count() == 1 and OrmQ.objects.count() == 0


def test_a_refused_interval_attaches_nothing(admin_client, tmp_path):
    response = attach_files(admin_client, "folder", path=str(tmp_path), sync_minutes="20000")
    assert "1 minute to 7 days" in form_errors(response, "sync_minutes")
    assert not Source.objects.filter(name="share").exists()
    assert OrmQ.objects.count() == 0 and not Schedule.objects.exists()


def test_only_a_superuser_may_attach_a_folder(tmp_path):
    client = staff_with("add_source", "view_source")
    assert client.get(ATTACH, {"kind": "folder"}).status_code == 200
    response = attach_files(client, "folder", path=str(tmp_path))
    assert (
        form_errors(response) == "Only a superuser may attach a folder: it reads files on the server's disk."
    )
    assert not Source.objects.filter(name="share").exists() and OrmQ.objects.count() == 0


def test_staff_without_add_permission_cannot_reach_attach_files(tmp_path):
    client = staff_with("view_source", "change_source")
    assert client.get(ATTACH, {"kind": "files"}).status_code == 403
    assert attach_files(client, "folder", path=str(tmp_path)).status_code == 403
    assert not Source.objects.filter(name="share").exists()


def test_attaching_a_bucket_prefix_with_a_schedule(admin_client, s3):
    bucket = s3.make_bucket()
    s3.put(bucket, "docs/guide.md", b"# Guide\n\nInstall it with pip.")
    response = attach_files(
        admin_client, "s3", uri=f"s3://{bucket}/docs/", endpoint_url=s3.endpoint_url, region="us-east-1",
        sync_minutes="15", priority="high",
    )  # fmt: skip
    assert response.status_code == 302
    source = Source.objects.get(name="share")
    assert (source.kind, source.options["bucket"], source.options["prefix"]) == ("s3", bucket, "docs/")
    assert source.options["endpoint_url"] == s3.endpoint_url and source.default_priority == "high"
    assert "AWS" not in str(source.options) and "SECRET" not in str(source.options).upper()
    assert schedule_of(source).minutes == 15 and source.options["sync_minutes"] == 15
    assert OrmQ.objects.count() == 1


def test_a_bucket_that_does_not_exist_is_refused_on_the_form(admin_client, s3):
    response = attach_files(
        admin_client, "s3", uri="s3://no-such-bucket-here/x", endpoint_url=s3.endpoint_url
    )
    assert "does not exist" in form_errors(response)
    assert not Source.objects.filter(name="share").exists()
    assert OrmQ.objects.count() == 0


def test_web_pages_on_a_loopback_address_are_refused_unless_the_host_is_allowed(admin_client, settings):
    settings.SOURCE_URL_ALLOWED_HOSTS = []
    urls = "https://example.com/handbook\nhttp://127.0.0.1:8080/admin"
    response = attach_files(admin_client, "urls", urls=urls)
    assert "127.0.0.1 is a loopback address (server-side request forgery guard)" in form_errors(response)
    assert not Source.objects.filter(name="share").exists() and OrmQ.objects.count() == 0

    settings.SOURCE_URL_ALLOWED_HOSTS = ["127.0.0.1"]
    assert attach_files(admin_client, "urls", urls=urls).status_code == 302
    source = Source.objects.get(name="share")
    assert source.options["urls"] == ["https://example.com/handbook", "http://127.0.0.1:8080/admin"]
    assert OrmQ.objects.count() == 1


def test_web_pages_need_urls_or_a_sitemap(admin_client):
    response = attach_files(admin_client, "urls", urls="  \n", sitemap="")
    assert form_errors(response, "urls") == "Give the URLs of the pages, or a sitemap URL."
    assert attach_files(admin_client, "urls", sitemap="https://example.com/sitemap.xml").status_code == 302
    assert Source.objects.get(name="share").options["sitemap"] == "https://example.com/sitemap.xml"


# --- A file source's page -----------------------------------------------------------------------


def change_url(source):
    return reverse("admin:documents_source_change", args=[source.pk])


def test_the_list_and_the_page_show_the_last_sync_and_each_failed_file(admin_client, synced):
    listing = admin_client.get(LIST).content.decode()
    assert "2 seen, 1 new, 0 changed, 0 removed, 1 failed" in listing
    response = admin_client.get(change_url(synced))
    page = response.content.decode()
    assert "<code>empty.txt</code>: empty file" in page and str(synced.options["path"]) in page
    assert response.context["form"]["sync_minutes"].value() is None  # on demand only


def test_the_sync_interval_and_priority_are_edited_on_the_page(admin_client, synced):
    response = admin_client.post(change_url(synced), {"sync_minutes": "30", "priority": "high"})
    assert response.status_code == 302
    synced.refresh_from_db()
    assert synced.options["sync_minutes"] == 30 and synced.default_priority == "high"
    schedule = schedule_of(synced)
    assert (schedule.minutes, schedule.func) == (30, "queue_admin.tasks.sync_source")
    assert admin_client.get(change_url(synced)).context["form"]["sync_minutes"].value() == 30

    admin_client.post(change_url(synced), {"sync_minutes": "", "priority": "high"})
    synced.refresh_from_db()
    assert synced.options["sync_minutes"] is None and schedule_of(synced) is None


@pytest.mark.parametrize("minutes", ["10081", "-1"])
def test_an_interval_out_of_range_is_refused_and_changes_nothing(admin_client, synced, minutes):
    file_sources.set_sync_interval(synced, 30)
    response = admin_client.post(change_url(synced), {"sync_minutes": minutes, "priority": "high"})
    assert response.status_code == 200
    assert "Sync every 1 minute to 7 days" in form_errors(response, "sync_minutes")
    synced.refresh_from_db()
    assert synced.options["sync_minutes"] == 30 and synced.default_priority == "medium"
    assert schedule_of(synced).minutes == 30


def test_sync_now_queues_a_sync(admin_client, synced):
    response = admin_client.post(change_url(synced), {"_sync_now": "Sync now"}, follow=True)
    assert response.redirect_chain[-1][0] == change_url(synced)
    assert "Syncing share: a worker reads its new and changed files now" in text(response)
    assert OrmQ.objects.count() == 1


def test_who_may_only_look_gets_the_read_only_page(synced):
    client = staff_with("view_source")
    response = client.get(change_url(synced))
    page = text(response)
    assert response.status_code == 200 and "on demand only" in page
    assert 'name="sync_minutes"' not in page and "sync-now-button" not in page
    assert client.post(change_url(synced), {"_sync_now": "1"}).status_code == 403
    assert client.post(change_url(synced), {"sync_minutes": "5", "priority": "high"}).status_code == 403
    synced.refresh_from_db()
    assert OrmQ.objects.count() == 0 and schedule_of(synced) is None and synced.default_priority == "medium"


def test_the_resync_action_queues_a_sync_of_a_file_source(admin_client, synced):
    response = admin_client.post(
        LIST,
        {"action": "resync_sources", "_selected_action": [synced.pk]},
        follow=True,
    )
    assert "Syncing share" in response.content.decode()
    assert OrmQ.objects.count() == 1
    assert Source.objects.get(pk=synced.pk).last_sync["seen"] == 2
