"""Every admin page Sidecar adds or overrides, for the browser tests that check them all
(test_admin_browser_layout.py, test_admin_browser_accessibility.py): data that stresses their
layout, and how to open each page — some only appear after an action or an upload."""

from dataclasses import dataclass

from documents.models import SourceDocument
from documents.providers.local import LocalEmbeddingProvider
from queue_admin import config, file_sources
from queue_admin.models import ProviderBatch, QueueItem, Worker
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
    ProviderBatch.objects.create(
        model="text-embedding-3-small", state="submitted", provider_status="in_progress", documents=10_000,
        provider_batch_id="batch_6752a1f0c8a48190b2d4e3f5a6b7c8d9", started_by="backfill command",
        request_counts={"total": 10_000, "completed": 4_200, "failed": 3},
    )  # fmt: skip
    ProviderBatch.objects.create(
        model="text-embedding-3-small", state="done", provider_status="failed", documents=25, returned=25,
        provider_batch_id="batch_0a1b2c3d4e5f60718293a4b5c6d7e8f9", error_message=UNBROKEN_ERROR,
    )  # fmt: skip
    source = file_sources.attach("uploads", [], name="handbook-uploads")
    config.set_value("batch_size", 64)
    return Seeded(document=documents[-1], source_id=source.pk)


def _opened(path: str, showing: str):
    """Open `path` and check that it shows `showing` (the case the data was made for)."""

    def open_page(page, seeded):
        page.goto(path.format(seeded=seeded))
        page.wait_for_selector(showing)

    return open_page


def _after_action(list_path: str, action: str, showing: str):
    def open_page(page, seeded):
        page.goto(list_path)
        page.check("#action-toggle")
        page.select_option("select[name=action]", action)
        page.click("button[name=index]")
        page.wait_for_selector(showing)

    return open_page


def _import_preview(page, seeded):
    page.goto("/admin/documents/sourcedocument/import/")
    page.set_input_files("#id_file", files=[{"name": "handbook.csv", "mimeType": "text/csv", "buffer": CSV}])
    page.click("input[type=submit]")
    page.wait_for_selector("#import-preview")


# name: how to open it (page, seeded) and see the case its data was made for. The names are the
# screenshots' names.
PAGES = {
    "dashboard": _opened("/admin/", "#top-errors table"),
    "documents": _opened("/admin/documents/sourcedocument/", "#result_list"),
    "document": _opened("/admin/documents/sourcedocument/{seeded.document.pk}/change/", "#content-main form"),
    "workers": _opened("/admin/queue_admin/worker/", "#result_list"),
    "queue-items": _opened("/admin/queue_admin/queueitem/", "#result_list"),
    "dead-letters": _opened("/admin/queue_admin/deadletter/", "#result_list"),
    "provider-batches": _opened("/admin/queue_admin/providerbatch/", "#result_list"),
    "settings": _opened("/admin/queue_admin/queueconfig/", "#queue-settings-form"),
    "search": _opened(f"/admin/search/?q={SEARCH_QUERY.replace(' ', '+')}", "#search-results"),
    "search-quality": _opened("/admin/search/quality/", "#quality-test-set"),
    "sources": _opened("/admin/documents/source/", "#result_list"),
    "attach-table": _opened("/admin/documents/source/add/", "#id_table_choice"),
    "attach-files": _opened("/admin/documents/source/add/?kind=files", "#content-main form"),
    "source": _opened("/admin/documents/source/{seeded.source_id}/change/", "#content-main form"),
    "source-upload": _opened("/admin/documents/source/{seeded.source_id}/upload/", "input[type=file]"),
    "backfill": _opened("/admin/documents/sourcedocument/backfill/", "#backfill-estimate"),
    "import-upload": _opened("/admin/documents/sourcedocument/import/", "#id_file"),
    "import-preview": _import_preview,
    "reembed-confirmation": _after_action(
        "/admin/documents/sourcedocument/", "reembed_selected", "#reembed-summary"
    ),
    "retry-permanent": _after_action("/admin/queue_admin/deadletter/", "retry", "#retry-warning"),
    "detach-confirmation": _opened("/admin/documents/source/{seeded.source_id}/delete/", "#detach-counts"),
}
