"""The documents admin and semantic search through a real browser (tests/browser.py)."""

import pytest

from documents.models import SourceDocument
from documents.providers.local import LocalEmbeddingProvider
from queue_admin.models import QueueItem
from queue_admin.worker import QueueWorker
from tests.browser import docs_screenshot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_caches(fresh_search_caches):
    pass


def embed_with_the_local_model():
    with QueueWorker(LocalEmbeddingProvider(), name="browser-test") as worker:
        worker.run()


def test_reembed_selected_documents_queues_them_at_high_priority(operator_page):
    docs = [
        SourceDocument.objects.create(title=f"Report {n}", content=f"Quarterly report number {n}.")
        for n in range(3)
    ]
    QueueItem.objects.all().delete()  # as if the workers had finished: nothing queued
    page = operator_page
    page.goto("/admin/documents/sourcedocument/")
    for doc in docs[:2]:
        page.check(f"input.action-select[value='{doc.pk}']")
    page.select_option("select[name=action]", "reembed_selected")
    page.click("button[name=index]")

    summary = page.inner_text("#reembed-summary")
    assert "Re-embed 2 documents" in summary and "high priority" in summary
    tokens = sum(len(doc.content) // 4 + 1 for doc in docs[:2])
    assert f"about {tokens} tokens" in summary
    page.click("input[type=submit][value^='Yes, re-embed']")

    page.wait_for_url("**/admin/documents/sourcedocument/")
    assert "Queued 2 documents for re-embedding at high priority" in page.inner_text("ul.messagelist")
    items = QueueItem.objects.filter(status="pending")
    assert sorted(str(item.document_id) for item in items) == sorted(str(doc.pk) for doc in docs[:2])
    assert {(item.priority, item.metadata.get("force")) for item in items} == {("high", True)}
    assert "queued" in page.inner_text(f"tr:has(input[value='{docs[0].pk}'])")
    docs_screenshot(page, "documents")


def test_search_finds_the_document_a_query_was_taken_from(admin_page, screenshot_dir):
    texts = {
        "Lighthouse keeping": "The keeper climbed the spiral stairs every evening to light the great lamp "
        "that warned ships away from the rocks.",
        "Sourdough": "Feed the starter with flour and water, let the dough rise overnight, then bake it "
        "in a very hot oven.",
        "Tax returns": "File your annual income statement before the deadline to avoid a late penalty.",
        "Migrating birds": "Every autumn the geese fly south in long V-shaped formations.",
    }
    for title, text in texts.items():
        SourceDocument.objects.create(title=title, content=text)
    embed_with_the_local_model()

    page = admin_page
    page.goto("/admin/")
    page.click("a:text('Semantic search')")
    page.fill("input[name=q]", "let the dough rise overnight")
    page.select_option("select[name=k]", "5")
    page.click("input[type=submit][value=Search]")
    page.wait_for_selector("#search-results")
    first_title = page.inner_text("#search-results tbody tr:first-child td:nth-child(3)")
    assert first_title == "Sourdough"
    assert LocalEmbeddingProvider.model_id in page.inner_text("#search-answered-by")
    page.screenshot(path=str(screenshot_dir / "search.png"), full_page=True)
    docs_screenshot(page, "search")

    page.click("#search-results tbody tr:first-child a")
    page.wait_for_url("**/change/")
    assert page.input_value("#id_title") == "Sourdough"


def test_an_operator_cannot_delete_a_document(operator_page):
    doc = SourceDocument.objects.create(title="Keep me", content="An important document.")
    page = operator_page
    page.goto("/admin/documents/sourcedocument/")
    actions = page.eval_on_selector_all("select[name=action] option", "options => options.map(o => o.value)")
    assert "reembed_selected" in actions and "delete_selected" not in actions

    page.goto(f"/admin/documents/sourcedocument/{doc.pk}/change/")
    assert page.locator("a.deletelink").count() == 0
    assert "Embedding" in page.inner_text("#content")

    response = page.goto(f"/admin/documents/sourcedocument/{doc.pk}/delete/")
    assert response.status == 403
    assert SourceDocument.objects.filter(pk=doc.pk).exists()
