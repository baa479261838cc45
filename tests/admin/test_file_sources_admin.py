"""File sources in the admin: the Sources list and a source's page show the last sync's figures
and each failed file's reason; the Resync action queues a sync for a worker."""

import pytest
from django.urls import reverse
from django_q.models import OrmQ

from documents.models import Source
from queue_admin import file_sources

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_config")]


@pytest.fixture
def synced(tmp_path):
    (tmp_path / "guide.md").write_text("# Guide\n\nInstall it with pip on any machine with Python.\n")
    (tmp_path / "empty.txt").write_bytes(b"")
    source = file_sources.attach("folder", [str(tmp_path)], name="share")
    file_sources.run_sync(source)
    return source


def test_the_list_and_the_page_show_the_last_sync_and_each_failed_file(admin_client, synced):
    listing = admin_client.get(reverse("admin:documents_source_changelist")).content.decode()
    assert "2 seen, 1 new, 0 changed, 0 removed, 1 failed" in listing
    page = admin_client.get(reverse("admin:documents_source_change", args=[synced.pk])).content.decode()
    assert "<code>empty.txt</code>: empty file" in page
    assert "on demand only" in page and str(synced.options["path"]) in page


def test_the_resync_action_queues_a_sync_of_a_file_source(admin_client, synced):
    response = admin_client.post(
        reverse("admin:documents_source_changelist"),
        {"action": "resync_sources", "_selected_action": [synced.pk]},
        follow=True,
    )
    assert "Syncing share" in response.content.decode()
    assert OrmQ.objects.count() == 1
    assert Source.objects.get(pk=synced.pk).last_sync["seen"] == 2
