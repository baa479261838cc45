"""A file source's last sync as HTML: the Sources list, a source's page and its upload page."""

from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from documents.models import Source
from documents.sources.file_sync import SyncReport


def last_sync_html(source: Source, *, failures: bool = True) -> str:
    """A file source's last (or running) sync: its figures, and each failed file's reason."""
    report = SyncReport.from_dict(source.last_sync)
    if not report.started_at:
        return mark_safe('<div class="help">not synced yet</div>')
    when = "syncing now" if report.running else f"synced {report.finished_at[:16].replace('T', ' ')} UTC"
    html = format_html(
        '<div class="sidecar-last-sync" data-running="{}">{}: {}</div>',
        report.running,
        when,
        report.summary(),
    )
    if report.error:
        html += format_html('<div class="sidecar-source-reason">stopped: {}</div>', report.error)
    if failures and report.failures:
        items = format_html_join(
            "", "<li><code>{}</code>: {}</li>", ((f["key"], f["reason"]) for f in report.failures)
        )
        more = report.failed - len(report.failures)
        html += format_html('<ul class="sidecar-sync-failures">{}</ul>', items)
        if more > 0:
            html += format_html('<div class="help">and {} more</div>', f"{more:,}")
    return html
