"""Uploading a zip of files through the real admin UI (tests/browser.py), then finding its pages
with semantic search, each hit citing its file, page and heading. The sync task and the
embedding run here, as a worker would run them, with the real local model."""

import io
import zipfile

import pytest
from django_q.models import OrmQ
from reportlab.pdfgen import canvas

from documents.models import Source, SourceDocument
from documents.providers.local import LocalEmbeddingProvider
from queue_admin import tasks
from queue_admin.worker import QueueWorker
from tests.browser import docs_screenshot

pytestmark = pytest.mark.django_db(transaction=True)

PAGES = {  # page: (outline heading, level, text)
    1: ("Introduction", 0, "The lighthouse keeper's manual explains how the great lamp is looked after."),
    2: ("Installation", 0, "Mount the lamp housing on the tower and connect it to the generator room."),
    3: (
        "Proxies",
        1,
        "Behind a corporate firewall, set the HTTPS_PROXY environment variable before the lamp "
        "controller downloads its firmware updates.",
    ),
    4: ("Maintenance", 0, "Polish the Fresnel lens every week and replace the bulb every winter."),
}


@pytest.fixture(autouse=True)
def _fresh_caches(fresh_search_caches, settings, tmp_path):
    settings.SOURCE_UPLOAD_DIR = tmp_path / "uploads"


def manual_pdf() -> bytes:
    """A four-page PDF with an outline; each page's text long enough to be a chunk of its own."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer)
    pdf.setTitle("Lighthouse Manual")
    for page, (heading, level, text) in PAGES.items():
        pdf.bookmarkPage(f"p{page}")
        pdf.addOutlineEntry(heading, f"p{page}", level)
        y = 720
        for start in range(0, len(text), 60):
            pdf.drawString(72, y, text[start : start + 60])
            y -= 16
        pdf.drawString(72, y - 16, "This page belongs to the keeper's manual and is kept with it.")
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def bundle() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manuals/lighthouse.pdf", manual_pdf())
        archive.writestr(
            "notes/sourdough.md",
            "# Baking\n\n## Sourdough\n\nFeed the starter with flour and water, let the dough rise "
            "overnight, then bake it in a very hot oven.\n",
        )
        archive.writestr("../escape.md", "# Out\n\nnever written")
    return buffer.getvalue()


def test_an_admin_attaches_an_uploads_source_uploads_a_zip_and_finds_its_pages_with_citations(
    admin_page, screenshot_dir
):
    page = admin_page

    page.goto("/admin/documents/source/")
    page.click("#attach-files-link")
    page.check("input[name=kind][value=uploads]")
    page.click("#show-kind-fields")
    assert page.locator("#id_sync_minutes").count() == 0  # it syncs when files are uploaded
    page.fill("#id_name", "manuals")
    page.click("#attach-button")
    page.wait_for_url("**/upload/")
    assert "Attached uploads source manuals. Upload its files here." in page.inner_text("ul.messagelist")
    source = Source.objects.get(name="manuals")
    assert OrmQ.objects.count() == 0  # nothing to sync until files arrive

    page.set_input_files(
        "#id_files", files=[{"name": "bundle.zip", "mimeType": "application/zip", "buffer": bundle()}]
    )
    page.click("input[type=submit][value=Upload]")
    assert "Uploaded 1 file to manuals" in page.inner_text("ul.messagelist")
    assert "1 upload waiting for a worker" in page.inner_text("#upload-status")
    assert SourceDocument.objects.filter(source=source).count() == 0  # nothing parsed in the request

    page.goto("/admin/documents/source/")
    page.click("tr:has-text('manuals') a.sidecar-upload-link")  # the list's way to the upload page
    page.wait_for_url("**/upload/")
    tasks.sync_source(source.pk, "")  # the worker's part: take the zip in, parse, write documents
    with QueueWorker(LocalEmbeddingProvider(), name="browser-test") as worker:
        worker.run()

    page.reload()
    status = page.inner_text("#upload-status")
    assert "manuals: 2 documents" in status
    assert "2 seen, 2 new, 0 changed, 0 removed, 1 failed" in status
    assert "bundle.zip: ../escape.md" in status
    page.screenshot(path=str(screenshot_dir / "uploads.png"), full_page=True)
    docs_screenshot(page, "uploads")

    page.goto("/admin/search/")
    page.fill("input[name=q]", "which environment variable for the proxy behind a firewall")
    page.click("input[type=submit][value=Search]")
    page.wait_for_selector("#search-results")
    first = page.locator("#search-results tbody tr").first
    assert "Lighthouse Manual" in first.inner_text()
    assert first.locator(".sidecar-citation").inner_text() == "page 3 — Installation › Proxies"
