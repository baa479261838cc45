"""Attaching a table and detaching it again, through the admin in a real browser
(tests/browser.py): choose the table, see its columns, preview the documents with the estimate,
attach; a worker task copies the rows; detach through the confirmation with its counts."""

import re

import pytest

from documents.models import Source, SourceDocument
from queue_admin import tasks
from tests.browser import DOCS_VIEWPORT, docs_screenshot

pytestmark = pytest.mark.django_db(transaction=True)


def test_attach_a_table_with_the_preview_then_detach_it(admin_page, blog_posts, sql, screenshot_dir):
    SourceDocument.objects.create(title="Release notes", content="Sidecar's own document.")
    page = admin_page
    page.goto("/admin/")
    page.click("a:text('Sources')")
    page.click("#attach-table-link")

    # Choosing the table reloads the page with its columns.
    page.select_option("#id_table_choice", label="public.blog_post")
    page.wait_for_selector("#table-columns")
    columns = page.inner_text("#table-columns")
    assert "title" in columns and "bigint" in columns and "primary key" in columns
    assert "binary data (bytea)" in columns
    page.fill("#id_name", "blog")
    page.fill("#id_template", "{title}\n\n{body}")
    page.select_option("#id_title_column", "title")
    page.check("#id_metadata_columns input[value=lang]")
    page.fill("#id_where", "published")

    page.click("#preview-button")
    page.wait_for_selector("#source-preview")
    assert not Source.objects.filter(name="blog").exists()  # a preview writes nothing
    assert [row.get_attribute("data-key") for row in page.query_selector_all(".sidecar-preview-row")] == [
        "1",
        "3",
    ]
    assert "Set HTTPS_PROXY before you start." in page.inner_text("#source-preview")
    estimate = page.inner_text("#source-estimate")
    assert "2 rows of the table would become documents" in estimate
    assert "nothing was embedded in the last 15 minutes" in estimate and "no price is set" in estimate
    page.screenshot(path=str(screenshot_dir / "source-attach.png"), full_page=True)
    page.click("#toggle-nav-sidebar")  # the list's columns need the width (remembered by the browser)
    viewport = page.viewport_size
    page.set_viewport_size(DOCS_VIEWPORT)  # first, so that the preview stays at the top of it
    page.evaluate("document.getElementById('preview-section').scrollIntoView()")
    docs_screenshot(page, "source-attach-preview")
    page.set_viewport_size(viewport)

    page.click("#attach-button")
    page.wait_for_url("**/admin/documents/source/")
    assert "Attached public.blog_post as source blog" in page.inner_text("ul.messagelist")
    source = Source.objects.get(name="blog")
    assert "waiting for a worker" in page.inner_text(f"tr:has(input[value='{source.pk}'])")

    tasks.copy_source_rows(source.pk, False)  # what the worker would run
    page.reload()
    row = page.inner_text(f"tr:has(input[value='{source.pk}'])")
    assert "public.blog_post" in row and "active" in row
    assert re.search(r"\b2\b", page.inner_text(f"tr:has(input[value='{source.pk}']) td.field-documents"))
    docs_screenshot(page, "sources")

    page.check(f"input.action-select[value='{source.pk}']")
    page.select_option("select[name=action]", "detach_sources")
    page.click("button[name=index]")
    page.wait_for_selector("#detach-counts")
    page.screenshot(path=str(screenshot_dir / "source-detach.png"), full_page=True)
    assert page.inner_text("#detach-counts td[data-count=documents]") == "2"
    assert "The table itself is left exactly as it was" in page.inner_text("#detach-summary")
    page.click("#confirm-detach")

    page.wait_for_url("**/admin/documents/source/")
    assert "Detached blog: 2 documents removed" in page.inner_text("ul.messagelist")
    assert not Source.objects.filter(name="blog").exists()
    assert not SourceDocument.objects.filter(source_key__isnull=False).exists()
    assert sql("SELECT * FROM public.blog_post ORDER BY id") == blog_posts


def test_attach_a_folder_then_set_its_schedule_on_its_page(admin_page, tmp_path, screenshot_dir):
    from django_q.models import Schedule

    (tmp_path / "guide.md").write_text("# Guide\n\nInstall it with pip on any machine with Python.\n")
    (tmp_path / "empty.txt").write_bytes(b"")
    page = admin_page
    page.goto("/admin/documents/source/")
    page.click("#attach-files-link")

    # Choosing the kind reloads the page with that kind's fields.
    page.check("input[name=kind][value=folder]")
    page.click("#show-kind-fields")
    page.wait_for_selector("#id_path")
    page.fill("#id_name", "share")
    page.fill("#id_path", str(tmp_path))
    page.fill("#id_include", "*.md, *.txt")
    page.screenshot(path=str(screenshot_dir / "source-attach-files.png"), full_page=True)
    page.click("#attach-button")
    page.wait_for_url("**/admin/documents/source/")
    assert "A worker syncs its files now" in page.inner_text("ul.messagelist")
    source = Source.objects.get(name="share")
    assert "not synced yet" in page.inner_text(f"tr:has(input[value='{source.pk}'])")

    tasks.sync_source(source.pk)  # what the worker would run
    page.click(f"tr:has(input[value='{source.pk}']) th a")
    assert "<code>empty.txt</code>" in page.inner_html("#source-summary")
    page.fill("#id_sync_minutes", "60")
    page.screenshot(path=str(screenshot_dir / "source-files-page.png"), full_page=True)
    page.click("#save-button")
    page.wait_for_url("**/admin/documents/source/")
    assert "Saved share." in page.inner_text("ul.messagelist")
    assert Schedule.objects.get(name="sidecar-sync-share").minutes == 60
