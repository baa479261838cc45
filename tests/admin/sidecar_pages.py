"""Every admin page Sidecar adds or overrides, for the browser tests that check them all
(test_admin_browser_layout.py, test_admin_browser_accessibility.py): data that stresses their
layout, and how to open each page — some only appear after an action or an upload."""

from dataclasses import dataclass

from documents.models import SourceDocument
from documents.providers.local import LocalEmbeddingProvider
from queue_admin import config, file_sources
from queue_admin.models import QueueItem, Worker
from queue_admin.worker import QueueWorker

# A message with no space to break at: a stack of identifiers, a URL, a base64 blob.
UNBROKEN_ERROR = "HTTP400:" + "input_too_long_for_the_model_" * 21
SEARCH_QUERY = "let the dough rise overnight"
CSV = b"title,content\nRefund policy,Refunds are paid within 14 days.\nShipping,Parcels leave within two days.\n"


@dataclass
class Seeded:
    document: SourceDocument
    source_id: int


def seed() -> Seeded:
    """Embedded documents (the chart has bars, search finds them), failed items with long
    messages, workers with long ids, a stuck item, an uploads source, a settings change."""
    texts = {
        "Sourdough": "Feed the starter with flour and water, let the dough rise overnight, then bake it.",
        "Lighthouse keeping": "The keeper climbed the spiral stairs every evening to light the great lamp.",
        "A quarterly report on the embedding pipeline's throughput, errors and costs per provider": (
            "Throughput rose, errors fell, and the cost per million tokens stayed the same."
        ),
    }
    documents = [SourceDocument.objects.create(title=title, content=text) for title, text in texts.items()]
    with QueueWorker(LocalEmbeddingProvider(), name="browser-layout") as worker:
        worker.run()

    failed = [
        SourceDocument.objects.create(title=f"Poison pill {n}", content=f"refused text {n}") for n in range(3)
    ]
    QueueItem.objects.filter(document__in=failed[:2]).update(
        status="failed", retry_count=3, error_kind="permanent", error_message=UNBROKEN_ERROR
    )
    QueueItem.objects.filter(document=failed[2]).update(
        status="failed",
        retry_count=3,
        error_kind="transient",
        error_message="Connection refused while talking to the embedding service " * 8,
    )
    Worker.objects.create(
        worker_id="ip-10-0-12-34.eu-west-1.compute.internal:41017:drain-a",
        hostname="ip-10-0-12-34.eu-west-1.compute.internal",
        pid=41017,
        status="active",
        tasks_processed=1280,
    )
    Worker.objects.create(worker_id="web-2:5230:drain-b", hostname="web-2", pid=5230, tasks_processed=960)
    source = file_sources.attach("uploads", [], name="handbook-uploads")
    config.set_value("batch_size", 64)
    return Seeded(document=documents[-1], source_id=source.pk)


def _after_action(page, list_path: str, action: str, checkboxes: str = "#action-toggle"):
    page.goto(list_path)
    page.check(checkboxes)
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")


def _import_preview(page, seeded):
    page.goto("/admin/documents/sourcedocument/import/")
    page.set_input_files("#id_file", files=[{"name": "handbook.csv", "mimeType": "text/csv", "buffer": CSV}])
    page.click("input[type=submit]")
    page.wait_for_selector("#import-preview")


# name: how to open it (page, seeded). The names are the screenshots' names.
PAGES = {
    "dashboard": lambda page, seeded: page.goto("/admin/"),
    "documents": lambda page, seeded: page.goto("/admin/documents/sourcedocument/"),
    "document": lambda page, seeded: page.goto(
        f"/admin/documents/sourcedocument/{seeded.document.pk}/change/"
    ),
    "workers": lambda page, seeded: page.goto("/admin/queue_admin/worker/"),
    "queue-items": lambda page, seeded: page.goto("/admin/queue_admin/queueitem/"),
    "dead-letters": lambda page, seeded: page.goto("/admin/queue_admin/deadletter/"),
    "settings": lambda page, seeded: page.goto("/admin/queue_admin/queueconfig/"),
    "search": lambda page, seeded: page.goto(f"/admin/search/?q={SEARCH_QUERY.replace(' ', '+')}"),
    "search-quality": lambda page, seeded: page.goto("/admin/search/quality/"),
    "sources": lambda page, seeded: page.goto("/admin/documents/source/"),
    "attach-table": lambda page, seeded: page.goto("/admin/documents/source/add/"),
    "attach-files": lambda page, seeded: page.goto("/admin/documents/source/add/?kind=files"),
    "source": lambda page, seeded: page.goto(f"/admin/documents/source/{seeded.source_id}/change/"),
    "source-upload": lambda page, seeded: page.goto(f"/admin/documents/source/{seeded.source_id}/upload/"),
    "backfill": lambda page, seeded: page.goto("/admin/documents/sourcedocument/backfill/"),
    "import-upload": lambda page, seeded: page.goto("/admin/documents/sourcedocument/import/"),
    "import-preview": _import_preview,
    "reembed-confirmation": lambda page, seeded: _after_action(
        page, "/admin/documents/sourcedocument/", "reembed_selected"
    ),
    "retry-permanent": lambda page, seeded: _after_action(page, "/admin/queue_admin/deadletter/", "retry"),
    "detach-confirmation": lambda page, seeded: page.goto(
        f"/admin/documents/source/{seeded.source_id}/delete/"
    ),
}
