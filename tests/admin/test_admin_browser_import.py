"""Importing documents through the real admin UI (tests/browser.py): upload, preview, confirm."""

import pytest

from console.admin import import_uploads
from documents.models import SourceDocument
from queue_admin.models import QueueItem
from tests.browser import docs_screenshot

pytestmark = pytest.mark.django_db(transaction=True)

CSV = (
    b"title,content,metadata\n"
    b'Refund policy,"Refunds are paid within 14 days.\nAsk support for exceptions.","{""source"": ""handbook""}"\n'
    b"Shipping,Parcels leave the warehouse within two working days.,\n"
)


def test_an_operator_imports_a_csv_file_after_seeing_its_preview(
    operator_page, screenshot_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(import_uploads, "upload_dir", lambda: tmp_path)
    page = operator_page

    page.goto("/admin/documents/sourcedocument/")
    page.click("text=Import")
    page.screenshot(path=str(screenshot_dir / "import-upload.png"), full_page=True)
    page.set_input_files("#id_file", files=[{"name": "handbook.csv", "mimeType": "text/csv", "buffer": CSV}])
    page.click("input[value='Upload and check']")

    summary = page.inner_text("#import-summary")
    assert "2 rows in handbook.csv" in summary and "2 new documents" in summary
    preview = page.inner_text("#import-preview")
    assert "Refund policy" in preview and "Refunds are paid within 14 days." in preview
    assert SourceDocument.objects.count() == 0  # the preview writes nothing
    page.screenshot(path=str(screenshot_dir / "import-preview.png"), full_page=True)
    docs_screenshot(page, "import-preview")

    page.click("input[value='Import 2 documents']")

    page.wait_for_url("**/admin/documents/sourcedocument/")
    assert "Imported 2 documents (2 new, 0 updated); they are queued for embedding." in page.inner_text(
        ".messagelist"
    )
    refunds = SourceDocument.objects.get(title="Refund policy")
    assert refunds.metadata == {"source": "handbook"}
    assert refunds.content == "Refunds are paid within 14 days.\nAsk support for exceptions."
    assert QueueItem.objects.filter(status="pending").count() == 2
    assert "Shipping" in page.inner_text("#result_list")
    assert list(tmp_path.iterdir()) == []  # the uploaded file was deleted

    # The message links to the queue items the import made, where their status shows.
    page.click(".messagelist a.sidecar-touched")
    page.wait_for_url("**/admin/queue_admin/queueitem/**")
    listed = page.inner_text("#result_list")
    assert "Refund policy" in listed and "Shipping" in listed
    assert page.locator("#result_list tbody tr").count() == 2
