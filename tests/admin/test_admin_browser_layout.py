"""Every page Sidecar adds or overrides, at 400 px and 1,400 px, light and dark, in Chromium:
nothing wider than the window (a wide table scrolls inside its own box), no label wrapped into
single letters, and the dashboard's chart visible in both themes. A screenshot of each
combination goes to TEST_OUTPUT_DIR/screenshots/layout-<page>-<width>-<theme>.png."""

import json

import pytest
from django.urls import reverse
from django.utils import timezone

from documents.models import DocumentEmbedding, SourceDocument
from queue_admin.models import QueueItem, Worker
from tests.browser import docs_screenshot, logged_in_page

pytestmark = pytest.mark.django_db(transaction=True)

WIDTHS = (400, 1400)
# The combinations the admin guide shows, besides its usual 1,280 px light pictures.
DOCS_SHOWS = {(400, "light"): "narrow", (1400, "dark"): "dark"}
THEMES = ("light", "dark")
# An error message as providers send them: long, without a space to break at.
LONG_ERROR = "upstream-error:" + "x" * 600
LONG_MODEL = "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2@revision-86741b4e3f5cb7765a600d3a3d55a0f6a6cb443d"


def page_paths(document_id) -> dict[str, str]:
    return {
        "dashboard": reverse("admin:index"),
        "documents": reverse("admin:documents_sourcedocument_changelist"),
        "document": reverse("admin:documents_sourcedocument_change", args=[document_id]),
        "backfill": reverse("admin:documents_sourcedocument_backfill"),
        "import": reverse("admin:documents_sourcedocument_import"),
        "sources": reverse("admin:documents_source_changelist"),
        "attach-table": reverse("admin:documents_source_add"),
        "attach-files": reverse("admin:documents_source_add") + "?kind=files",
        "search": reverse("admin:search"),
        "search-quality": reverse("admin:search_quality"),
        "queue-items": reverse("admin:queue_admin_queueitem_changelist"),
        "dead-letters": reverse("admin:queue_admin_deadletter_changelist"),
        "workers": reverse("admin:queue_admin_worker_changelist"),
        "settings": reverse("admin:queue_admin_queueconfig_changelist"),
    }


@pytest.fixture
def busy_queue(superuser, seeded_config):
    """Documents embedded by a model with a long name, failed items with a long unbroken error,
    a worker: the rows that once made pages overflow."""
    docs = SourceDocument.objects.bulk_create(
        SourceDocument(title=f"Handbook chapter {n}", content=f"chapter {n} text about refunds")
        for n in range(6)
    )
    for doc in docs[:3]:
        DocumentEmbedding.objects.create(
            document=doc, chunk_index=0, source_text=doc.content, model=LONG_MODEL,
            source_text_hash="0" * 32, document_text_hash="0" * 32, embedding=[0.1] * 384,
        )  # fmt: skip
    QueueItem.objects.filter(document__in=docs[3:]).update(
        status="failed", error_kind="permanent", error_message=LONG_ERROR
    )
    Worker.objects.create(
        worker_id=f"machine-with-a-long-name:4242:drain:{'a' * 40}", hostname="worker-1", pid=4242
    )
    return docs[0].pk


# Text that wraps one or two letters to a line: a label squeezed into a column too narrow for it.
SQUEEZED_LABELS = """() => {
  const found = [];
  for (const el of document.querySelectorAll('th, td, label, dt, dd, button, .button, h1, h2, h3, summary, a')) {
    const text = (el.innerText || '').trim();
    if (text.length < 4 || text.includes('\\n') || el.closest('.sidecar-message, pre, code')) continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    // The lines the element's own words sit on (its text nodes' boxes, not its empty blocks).
    const lines = new Set();
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (!node.textContent.trim()) continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      for (const r of range.getClientRects()) if (r.width > 0) lines.add(Math.round(r.top));
    }
    const longestWord = Math.max(...text.split(/\\s+/).map(w => w.length));
    if (lines.size > 2 && lines.size * 2 > longestWord) found.push(`${el.tagName} "${text.slice(0, 40)}" (${lines.size} lines)`);
  }
  return found;
}"""

TOO_WIDE = """() => {
  const width = document.documentElement.clientWidth;
  const wide = document.documentElement.scrollWidth;
  const culprits = [];
  if (wide > width + 1) {
    for (const el of document.querySelectorAll('body *')) {
      const box = el.getBoundingClientRect();
      if (box.right > width + 1 && !el.closest('[data-scrolls]')) {
        let parentOut = el.parentElement && el.parentElement.getBoundingClientRect().right > width + 1;
        const name = el.id || el.getAttribute('name') || el.className || '';
        if (!parentOut) culprits.push(`${el.tagName} ${name} (${Math.round(box.right)} px)`);
      }
    }
  }
  return {width, wide, culprits: culprits.slice(0, 8)};
}"""


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_fits_the_window_and_no_label_is_squeezed(
    browser, live_server, superuser, busy_queue, screenshot_dir, width, theme
):
    page = logged_in_page(browser, live_server, superuser, color_scheme=theme)
    problems = {}
    try:
        page.set_viewport_size({"width": width, "height": 900})
        for name, path in page_paths(busy_queue).items():
            page.goto(path)
            page.screenshot(path=str(screenshot_dir / f"layout-{name}-{width}-{theme}.png"), full_page=True)
            if name in ("dashboard", "settings") and (width, theme) in DOCS_SHOWS:
                docs_screenshot(page, f"{name}-{DOCS_SHOWS[width, theme]}", {"width": width, "height": 800})
            size = page.evaluate(TOO_WIDE)
            if size["wide"] > size["width"] + 1:
                problems[f"{name}: {size['wide']} px wide in {size['width']}"] = size["culprits"]
            squeezed = page.evaluate(SQUEEZED_LABELS)
            if squeezed:
                problems[f"{name}: squeezed labels"] = squeezed
    finally:
        page.context.close()
    assert problems == {}, json.dumps(problems, indent=1)


def test_the_chart_bars_stand_out_in_the_dark_theme(browser, live_server, superuser, busy_queue):
    """The bars' colour against the page's background: at least 3:1 (WCAG's contrast for
    graphics) in both themes."""
    QueueItem.objects.filter(status="pending").update(
        status="completed", processing_completed_at=timezone.now()
    )
    contrast = {}
    for theme in THEMES:
        page = logged_in_page(browser, live_server, superuser, color_scheme=theme)
        try:
            page.goto(reverse("admin:index"))
            contrast[theme] = page.evaluate(
                """() => {
                  const rgb = s => s.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number);
                  const lum = ([r, g, b]) => {
                    const c = [r, g, b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
                    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
                  };
                  const bar = getComputedStyle(document.querySelector('.sidecar-chart .bar')).fill;
                  let el = document.querySelector('.sidecar-chart'), bg = 'rgba(0, 0, 0, 0)';
                  while (el && (bg === 'rgba(0, 0, 0, 0)' || bg === 'transparent')) { bg = getComputedStyle(el).backgroundColor; el = el.parentElement; }
                  const [a, b] = [lum(rgb(bar)), lum(rgb(bg))].sort((x, y) => y - x);
                  return (a + 0.05) / (b + 0.05);
                }"""
            )
        finally:
            page.context.close()
    assert all(ratio >= 3 for ratio in contrast.values()), contrast
