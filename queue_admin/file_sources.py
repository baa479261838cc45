"""File sources as operators run them: attach a folder, a bucket or web pages, sync them (on
their schedule, on demand, or in the shell), and set how often. The merge of a store's files
with the documents is documents.sources.file_sync; this module decides when it runs, keeps
one sync per source at a time, and records its report on the source.
"""

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.utils import timezone

from documents.models import Source
from documents.sources import buckets, file_sync, stores, uploads, web
from documents.sources.file_sync import SyncReport
from documents.sources.stores import StoreError
from queue_admin.sources import SYNC_SCHEDULE_PREFIX, SourceError

logger = logging.getLogger("sidecar.sources")

# A sync task hands over to a successor after this long: django-q2 kills a task that outlives
# Q_CLUSTER["timeout"]. One file (a 200-page PDF) may take some seconds past it.
SYNC_TASK_SECONDS = 60
# A sync that holds the source longer than this without a word (its worker was killed) may be
# taken over by the next one.
SYNC_LEASE_SECONDS = settings.Q_CLUSTER["timeout"] + 60
assert SYNC_TASK_SECONDS + 120 < settings.Q_CLUSTER["timeout"]


def attach(
    kind: str,
    target: list[str],
    *,
    name: str,
    priority: str = "medium",
    include=(),
    exclude=(),
    endpoint_url: str = "",
    region: str = "",
    sitemap: str = "",
    remove_missing: bool = True,
    dry_run: bool = False,
    user=None,
) -> Source:
    """Attach a file source after checking what it points at (nothing is written when a check
    fails). `target`: a folder's path, an s3:// URI, the URLs. With
    `dry_run`, returns the checked source unsaved."""
    if kind == Source.Kind.FOLDER:
        options = _folder_options(_one(kind, target), include, exclude, user)
    elif kind == Source.Kind.S3:
        options = _bucket_options(_one(kind, target), endpoint_url, region)
    elif kind == Source.Kind.URLS:
        options = _web_options(target, sitemap)
    elif kind == Source.Kind.UPLOADS:
        if target:
            raise SourceError(
                "An uploads source takes no path: its files are uploaded on its page in the admin."
            )
        options = {}
    else:
        raise SourceError(f"Unknown kind of source {kind!r}.")
    if Source.objects.filter(name=name).exists():
        raise SourceError(f"A source named {name!r} exists already; choose another name.")
    source = Source(
        name=name,
        kind=kind,
        options={**options, "remove_missing": remove_missing},
        default_priority=priority,
        created_by=user if user is not None and user.is_authenticated else None,
    )
    source.full_clean()
    if not dry_run:
        source.save()
        logger.info("attached %s source %s (%s)", kind, name, describe(source))
    return source


def _one(kind: str, target: list[str]) -> str:
    if len(target) != 1:
        raise SourceError(
            f"A {kind} source takes one {'path' if kind == 'folder' else 'location'}, not {len(target)}."
        )
    return target[0]


def _folder_options(path: str, include, exclude, user) -> dict:
    """A folder of the server's disk (a mounted share): it must exist and be readable by this
    process, and lie in SOURCE_FOLDER_ROOTS when that is set; in the admin, only a superuser
    may attach one (it reads the server's disk)."""
    if user is not None and not user.is_superuser:
        raise PermissionDenied("Only a superuser may attach a folder: it reads files on the server's disk.")
    folder = Path(path).expanduser()
    if not folder.is_absolute():
        raise SourceError(f"Give the folder as an absolute path, not {path!r}.")
    folder = folder.resolve()
    roots = [Path(root) for root in settings.SOURCE_FOLDER_ROOTS]
    if roots and not any(folder.is_relative_to(root) for root in roots):
        raise SourceError(
            f"{folder} is outside the folders sources may read (SOURCE_FOLDER_ROOTS: "
            f"{', '.join(map(str, roots))})."
        )
    if not folder.is_dir():
        raise SourceError(f"{folder} does not exist or is not a folder.")
    return {
        "path": str(folder),
        "include": list(include) or list(stores.DEFAULT_INCLUDE),
        "exclude": list(exclude),
    }


def _bucket_options(uri: str, endpoint_url: str, region: str) -> dict:
    """A bucket prefix, checked by listing one key with the workers' credentials."""
    try:
        location = buckets.parse_s3_uri(uri, endpoint_url=endpoint_url, region=region)
        buckets.check_access(location)
    except buckets.BucketError as exc:
        raise SourceError(f"{uri}: {exc}") from None
    return {
        "bucket": location.bucket,
        "prefix": location.prefix,
        "endpoint_url": location.endpoint_url,
        "region": location.region,
    }


def _web_options(urls: list[str], sitemap: str) -> dict:
    """Pages or a sitemap, each address checked (http or https, no password in it); the
    addresses they resolve to are checked at every fetch, redirects included."""
    if not urls and not sitemap:
        raise SourceError("Give the URLs of the pages, or the URL of a sitemap.")
    limits = web_limits()
    checked = []
    for url in [*urls, *([sitemap] if sitemap else [])]:
        try:
            checked.append(web.check_url(url, limits))
        except web.FetchError as exc:
            # Named, so that among several URLs the one refused is plain to see.
            raise SourceError(str(exc) if url in str(exc) else f"{url}: {exc}") from None
    return {"urls": checked[: len(urls)], "sitemap": checked[-1] if sitemap else ""}


def web_limits() -> web.Limits:
    return web.Limits(
        max_bytes=settings.SOURCE_MAX_FILE_MB * 1024 * 1024,
        timeout_seconds=settings.SOURCE_FETCH_TIMEOUT_SECONDS,
        allowed_hosts=frozenset(settings.SOURCE_URL_ALLOWED_HOSTS),
    )


def describe(source: Source) -> str:
    """Where the source's files are, in a few words."""
    options = source.options
    if source.kind == Source.Kind.FOLDER:
        patterns = ", ".join(options.get("include") or [])
        excluded = ", ".join(options.get("exclude") or [])
        return f"folder {options['path']} ({patterns}{'; not ' + excluded if excluded else ''})"
    if source.kind == Source.Kind.S3:
        where = f"s3://{options['bucket']}/{options.get('prefix', '')}"
        return where + (f" at {options['endpoint_url']}" if options.get("endpoint_url") else "")
    if source.kind == Source.Kind.UPLOADS:
        waiting = uploads.waiting(upload_root(), source.pk)
        return "files uploaded in the admin" + (
            f" ({waiting} upload{'s' * (waiting != 1)} waiting for a worker)" if waiting else ""
        )
    if source.kind == Source.Kind.URLS:
        pages = len(options.get("urls") or [])
        return (
            f"sitemap {options['sitemap']}"
            if options.get("sitemap")
            else f"{pages} web page{'s' * (pages != 1)}"
        )
    return source.get_kind_display()


def store_for(source: Source) -> stores.Store:
    options = source.options
    if source.kind == Source.Kind.FOLDER:
        return stores.FolderStore(
            Path(options["path"]), tuple(options.get("include") or ()), tuple(options.get("exclude") or ())
        )
    if source.kind == Source.Kind.S3:
        return stores.BucketStore(
            buckets.BucketLocation(
                options["bucket"],
                options.get("prefix", ""),
                options.get("endpoint_url", ""),
                options.get("region", ""),
            )
        )
    if source.kind == Source.Kind.UPLOADS:
        return stores.FolderStore(uploads.files_dir(upload_root(), source.pk))
    if source.kind == Source.Kind.URLS:
        return stores.WebStore(tuple(options.get("urls") or ()), options.get("sitemap", ""), web_limits())
    raise SourceError(f"Source {source.name!r} is {source.get_kind_display()}: it has no files to sync.")


def upload_root() -> Path:
    return Path(settings.SOURCE_UPLOAD_DIR)


# --- Uploads: files given to an uploads source, taken in by the next sync -----------------


@dataclass
class Upload:
    """What an upload handed to the workers, and what it refused at once (with the reason)."""

    taken: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


def accept_upload(name: str) -> str:
    """The name an uploaded file is kept under, or UploadRefused with the reason: a type no
    parser reads is refused before a byte is stored (a zip's entries are checked in the worker)."""
    name = uploads.check_name(name)
    if not uploads.is_archive(name):
        uploads.check_type(name)
    return name


def upload_limit(name: str) -> int:
    """The most bytes one uploaded file may have: a zip the whole upload's limit, any other
    file the file limit."""
    return whole_upload_limit() if uploads.is_archive(name) else settings.SOURCE_MAX_FILE_MB * 1024 * 1024


def whole_upload_limit() -> int:
    return settings.SOURCE_UPLOAD_MAX_MB * 1024 * 1024


def require_uploads(source: Source) -> None:
    if source.kind != Source.Kind.UPLOADS:
        raise SourceError(
            f"Source {source.name!r} is {source.get_kind_display()}: files cannot be uploaded to it."
        )
    _require_files(source)


def upload_files(source: Source, paths: list[Path]) -> Upload:
    """Copy local files (the shell's `source upload`) into a new upload of the source and hand
    it to the workers; the caller syncs (or schedules a sync) to take it in."""
    require_uploads(source)
    upload = Upload()
    total, most = 0, whole_upload_limit()
    with uploads.Batch(upload_root(), source.pk) as batch:
        for path in paths:
            try:
                name = accept_upload(path.name)
                with path.open("rb") as file:
                    total += batch.add(name, file, upload_limit(name), most - total)
                upload.taken.append(name)
            except (uploads.UploadRefused, OSError) as exc:
                upload.refused.append((path.name, str(exc)))
        if upload.taken:
            batch.hand_over()
    return upload


def limits_for(source: Source) -> file_sync.Limits:
    return file_sync.Limits(
        max_bytes=settings.SOURCE_MAX_FILE_MB * 1024 * 1024,
        max_characters=settings.EMBEDDING_MAX_DOCUMENT_CHARACTERS,
        remove_missing=source.options.get("remove_missing", True),
    )


def _require_files(source: Source) -> None:
    if not source.is_files:
        raise SourceError(
            f"Source {source.name!r} is {source.get_kind_display()}, not files: resync it instead."
        )
    if source.state == Source.State.DETACHING:
        raise SourceError(f"Source {source.name!r} is being detached.")


def run_sync(
    source: Source,
    *,
    seconds: float | None = None,
    continues: str = "",
    progress: Callable[[SyncReport], None] | None = None,
) -> SyncReport | None:
    """Sync the source's files for up to `seconds` (all of them when None). Returns the report
    (with `running` still true when time ran out: call again with `continues` = its
    started_at), or None when another sync of this source is running."""
    _require_files(source)
    report = _claim(source, continues)
    if report is None:
        return None
    position = (source.copy_position or {}).get("after", "") if continues else ""
    deadline = None if seconds is None else time.monotonic() + seconds
    last_saved = time.monotonic()

    def saved_now_and_then(report: SyncReport) -> None:
        nonlocal last_saved
        if progress is not None:
            progress(report)
        if time.monotonic() - last_saved > 2:  # the Sources page shows the counts as they grow
            _save(source, report, position)
            last_saved = time.monotonic()

    try:
        if source.kind == Source.Kind.UPLOADS and not continues:
            # Under the sync's lease: one worker takes the uploads in, and the sync then sees them.
            uploads.take_in_all(
                upload_root(),
                source.pk,
                max_bytes=settings.SOURCE_MAX_FILE_MB * 1024 * 1024,
                refuse=report.fail,
            )
        after = file_sync.sync(
            source.pk, store_for(source), report, limits_for(source), after=position, deadline=deadline,
            progress=saved_now_and_then,
        )  # fmt: skip
    except StoreError as exc:
        report.error = str(exc)
        after = None
    except Exception as exc:
        report.error = f"the sync stopped: {exc}"
        _finish(source, report)
        raise
    if after is not None:
        _save(source, report, after)
        return report
    _finish(source, report)
    return report


def _claim(source: Source, continues: str) -> SyncReport | None:
    """Take the source for one sync, compare-and-set: a new sync only when none is running
    (or the running one's lease ran out: its worker died); a successor task only for the
    sync it continues."""
    report = SyncReport(started_at=file_sync.now_text(), running=True)
    if continues:
        current = SyncReport.from_dict(Source.objects.get(pk=source.pk).last_sync)
        if current.started_at != continues or not current.running:
            return None
        report = current
    lease = (timezone.now() + timedelta(seconds=SYNC_LEASE_SECONDS)).isoformat()
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE document_sources
                  SET last_sync = %s::jsonb || jsonb_build_object('lease_until', %s::text)
                WHERE id = %s
                  AND (last_sync IS NULL
                       OR NOT coalesce((last_sync->>'running')::boolean, false)
                       OR (last_sync->>'lease_until')::timestamptz < now()
                       OR last_sync->>'started_at' = %s)""",
            [_json(report), lease, source.pk, continues or None],
        )
        if cursor.rowcount != 1:
            return None  # another sync holds it
    if not continues:
        Source.objects.filter(pk=source.pk).update(copy_position=None)
    return report


def _save(source: Source, report: SyncReport, after: str) -> None:
    lease = (timezone.now() + timedelta(seconds=SYNC_LEASE_SECONDS)).isoformat()
    Source.objects.filter(pk=source.pk).update(
        last_sync={**report.as_dict(), "lease_until": lease}, copy_position={"after": after}
    )


def _finish(source: Source, report: SyncReport) -> None:
    report.running = False
    report.finished_at = file_sync.now_text()
    with transaction.atomic():
        Source.objects.filter(pk=source.pk).update(
            last_sync=report.as_dict(),
            copy_position=None,
            last_synced_at=timezone.now(),
            state=Source.State.BROKEN if report.error else Source.State.ACTIVE,
            state_reason=f"The last sync stopped: {report.error}" if report.error else "",
        )
    logger.info(
        "source %s synced: %s%s", source.name, report.summary(), f"; {report.error}" if report.error else ""
    )
    if source.kind == Source.Kind.UPLOADS and uploads.waiting(upload_root(), source.pk):
        # Uploaded while this sync ran, after it took the uploads in: the upload's own sync
        # task found this one holding the source and gave up, so this one queues the next.
        schedule_sync(source)


def _json(report: SyncReport) -> str:
    return json.dumps(report.as_dict())


def schedule_sync(source: Source, *, continues: str = "") -> None:
    """Queue a sync for a worker (on demand, or the successor of one out of time)."""
    from django_q.tasks import async_task

    _require_files(source)
    async_task("queue_admin.tasks.sync_source", source.pk, continues, group="sidecar-sources")


def set_sync_interval(source: Source, minutes: int | None) -> None:
    """Sync the source every `minutes` on the django-q2 schedule (None or 0: only on demand)."""
    from django_q.models import Schedule

    _require_files(source)
    if minutes and not 1 <= minutes <= 7 * 24 * 60:
        raise SourceError(
            "Sync every 1 minute to 7 days (10,080 minutes), or leave it empty for on demand only."
        )
    name = SYNC_SCHEDULE_PREFIX + source.name
    options = {**source.options, "sync_minutes": minutes or None}
    Source.objects.filter(pk=source.pk).update(options=options)
    source.options = options
    if not minutes:
        Schedule.objects.filter(name=name).delete()
        return
    Schedule.objects.update_or_create(
        name=name,
        defaults={
            "func": "queue_admin.tasks.sync_source",
            "args": repr((source.pk, "")),
            "schedule_type": Schedule.MINUTES,
            "minutes": minutes,
            "repeats": -1,
        },
    )
