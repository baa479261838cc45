"""Every admin list and change page answers, with the machine-owned models read-only."""

import re

import pytest
from django.contrib import admin
from django.urls import reverse

from documents.models import DocumentEmbedding, SourceDocument
from queue_admin.models import QueueConfig, QueueItem, Worker

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_of_each():
    doc = SourceDocument.objects.create(title="Admin page", content="some text")
    DocumentEmbedding.objects.create(
        document=doc, chunk_index=0, source_text="some text", source_text_hash="a" * 32,
        document_text_hash="a" * 32, embedding=[0.0] * 384, model="m", token_count=2,
    )  # fmt: skip
    Worker.objects.create(worker_id="host:1:drain:abc", hostname="host", pid=1)
    return doc


def test_every_registered_model_has_a_working_list_and_change_page(admin_client, one_of_each):
    for model in admin.site._registry:
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        page = admin_client.get(changelist)
        assert page.status_code == 200, changelist
        # Every page names itself and the site (tab titles, bookmarks, screen readers).
        assert re.search(rb"<title>[^<|]+ \| Sidecar admin</title>", page.content), changelist
        assert b'<div id="site-name"><a href="/admin/">Sidecar</a>' in page.content, changelist
        # The admin's own rows: a proxy list (dead letters, stuck items) shows only some.
        obj = admin.site._registry[model].get_queryset(admin_client.get(changelist).wsgi_request).first()
        if obj is not None:
            change = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
            response = admin_client.get(change)
            if model is QueueConfig:  # every setting is edited on the one settings page
                assert (response.status_code, response["Location"]) == (302, changelist), change
            else:
                assert response.status_code == 200, change


@pytest.mark.parametrize("model", [QueueItem, Worker, DocumentEmbedding])
def test_machine_owned_rows_cannot_be_added_or_edited(admin_client, one_of_each, model):
    meta = model._meta
    assert admin_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_add")).status_code == 403
    obj = model.objects.first()
    page = admin_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk]))
    assert page.status_code == 200 and b'type="submit" value="Save"' not in page.content


def test_queue_settings_cannot_be_added_or_deleted(admin_client):
    item = QueueConfig.objects.get(config_key="max_retries")
    assert admin_client.get(reverse("admin:queue_admin_queueconfig_add")).status_code == 403
    assert (
        admin_client.get(reverse("admin:queue_admin_queueconfig_delete", args=[item.pk])).status_code == 403
    )
