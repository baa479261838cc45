import json as jsonlib
from pathlib import Path

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from documents.models import Source
from documents.priority import Priority
from documents.providers.factory import get_provider
from documents.sources import tables
from documents.sources.stores import StoreError
from documents.sources.tables import TableSourceError
from queue_admin import file_sources, source_figures, sources


class Command(BaseCommand):
    help = "Sources of documents: attach a table of the application, list, resync, pause, resume, detach."

    def add_arguments(self, parser):
        commands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        attach = commands.add_parser(
            "attach",
            help="attach a table (SCHEMA.TABLE), a folder (PATH), a bucket (s3://BUCKET/PREFIX), web pages "
            "(URL ...) or an uploads source (no WHERE)",
        )
        attach.add_argument(
            "--kind",
            choices=["table", "folder", "s3", "urls", "uploads"],
            default="table",
            help="what to attach (default table)",
        )
        attach.add_argument(
            "target",
            nargs="*",
            metavar="WHERE",
            help='the table (public.blog_post, public."Blog Posts"), folder path, s3://bucket/prefix, or URLs',
        )
        attach.add_argument("--name", required=True, help="the source's name (lowercase, digits, - and _)")
        attach.add_argument(
            "--template", default="", help=r"table: what to embed, e.g. '{title}\n\n{body}' (required)"
        )
        attach.add_argument("--title-column", default="", metavar="COL")
        attach.add_argument(
            "--metadata", default="", metavar="COL,COL", help="columns copied into the metadata"
        )
        attach.add_argument("--where", default="", metavar="SQL", help="only rows where this is true")
        attach.add_argument("--priority", choices=Priority.values, default=Priority.MEDIUM)
        attach.add_argument("--dry-run", action="store_true", help="check and preview; attach nothing")
        attach.add_argument(
            "--background",
            action="store_true",
            help="copy the rows, or sync the files, in a worker task, not now",
        )
        files = attach.add_argument_group("files (folder, s3, urls)")
        files.add_argument(
            "--include", action="append", default=[], metavar="GLOB", help="folder: only these files"
        )
        files.add_argument(
            "--exclude", action="append", default=[], metavar="GLOB", help="folder: not these files"
        )
        files.add_argument("--endpoint-url", default="", metavar="URL", help="s3: MinIO, R2, GCS interop...")
        files.add_argument("--region", default="", help="s3: the bucket's region")
        files.add_argument("--sitemap", default="", metavar="URL", help="urls: every page of this sitemap")
        files.add_argument(
            "--keep-removed", action="store_true", help="keep the documents of files removed from the source"
        )
        files.add_argument("--every", type=int, default=0, metavar="MINUTES", help="sync on this schedule")
        sync = commands.add_parser(
            "sync", help="sync a file source; prints seen / new / changed / removed / failed"
        )
        sync.add_argument("name")
        sync.add_argument(
            "--wait", action="store_true", help="sync here and now, with progress (else a worker does)"
        )
        upload = commands.add_parser(
            "upload", help="upload files (or .zip archives of them) to an uploads source, then sync it"
        )
        upload.add_argument("name")
        upload.add_argument("files", nargs="+", metavar="FILE")
        upload.add_argument(
            "--background",
            action="store_true",
            help="let a worker take the files in (else here, with progress)",
        )
        listing = commands.add_parser("list", help="every source with its figures")
        listing.add_argument("--json", action="store_true")
        for action, text in [
            ("resync", "re-render every row (after a template change or a fix); re-embeds only changed text"),
            ("pause", "queue nothing of the source until it is resumed"),
            ("resume", "queue what the source missed while paused"),
        ]:
            commands.add_parser(action, help=text).add_argument("name")
        detach = commands.add_parser("detach", help="remove the triggers, documents and embeddings")
        detach.add_argument("name")
        detach.add_argument("--yes", action="store_true", help="do it (without: say what would be removed)")

    def handle(self, *args, action, **options):
        try:
            getattr(self, action)(**options)
        except (sources.SourceError, TableSourceError, StoreError, PermissionDenied) as exc:
            raise CommandError(str(exc)) from None
        except ValidationError as exc:  # the source's fields, e.g. a name with capitals
            raise CommandError(" ".join(exc.messages)) from None

    def attach(
        self,
        kind,
        target,
        name,
        template,
        title_column,
        metadata,
        where,
        priority,
        dry_run,
        background,
        **opts,
    ):
        if kind != "table":
            self._attach_files(kind, target, name, priority, dry_run, background, **opts)
            return
        if len(target) != 1 or not template:
            raise CommandError(
                "Attach a table as: source attach SCHEMA.TABLE --name NAME --template TEMPLATE"
            )
        request = sources.TableRequest(
            table=target[0],
            template=template.replace("\\n", "\n"),
            title_column=title_column,
            metadata_columns=tuple(column.strip() for column in metadata.split(",") if column.strip()),
            where=where,
        )
        if dry_run:
            self._preview(sources.plan_table(request))
            return
        bar = None

        def progress(done, total):
            nonlocal bar
            bar = bar or tqdm(total=total, unit="rows", desc="copying rows")
            bar.update(done - bar.n)

        source = sources.attach_table(
            request, name=name, priority=priority, copy_now=not background, progress=progress
        )
        if bar:
            bar.close()
        mapping_name = source.options["schema"] + "." + source.options["table"]
        if background:
            self.stdout.write(f"Attached {mapping_name} as source {source.name}; a worker copies its rows.")
        else:
            self.stdout.write(
                f"Attached {mapping_name} as source {source.name}: {source.rows_done:,} rows copied; "
                "the workers embed them now."
            )

    def _attach_files(self, kind, target, name, priority, dry_run, background, **opts):
        source = file_sources.attach(
            kind,
            target,
            name=name,
            priority=priority,
            include=opts["include"],
            exclude=opts["exclude"],
            endpoint_url=opts["endpoint_url"],
            region=opts["region"],
            sitemap=opts["sitemap"],
            remove_missing=not opts["keep_removed"],
            dry_run=dry_run,
        )
        if dry_run:
            self.stdout.write(
                f"Checked: {kind} source {name} can be attached ({file_sources.describe(source)})."
            )
            return
        if opts["every"]:
            file_sources.set_sync_interval(source, opts["every"])
        self.stdout.write(f"Attached {file_sources.describe(source)} as source {source.name}.")
        if kind == Source.Kind.UPLOADS:
            self.stdout.write(
                f"Upload files on its page in the admin, or with `manage.py source upload {name} FILE ...`."
            )
            return
        if background:
            file_sources.schedule_sync(source)
            self.stdout.write("A worker syncs its files now; `source list` shows how it went.")
            return
        self._sync_here(source)

    def sync(self, name, wait, **_):
        source = sources.by_name(name)
        if not wait:
            file_sources.schedule_sync(source)
            self.stdout.write(
                f"A worker syncs {name} now; `source sync {name} --wait` syncs here and shows it."
            )
            return
        self._sync_here(source)

    def upload(self, name, files, background, **_):
        source = sources.by_name(name)
        upload = file_sources.upload_files(source, [Path(file) for file in files])
        for file, reason in upload.refused:
            self.stderr.write(f"  refused: {file}: {reason}")
        if not upload.taken:
            raise CommandError("Nothing was uploaded.")
        self.stdout.write(f"Uploaded {len(upload.taken):,} file{'s' * (len(upload.taken) != 1)} to {name}.")
        if background:
            file_sources.schedule_sync(source)
            self.stdout.write("A worker takes them in now; `source list` shows how it went.")
            return
        self._sync_here(source)

    def _sync_here(self, source):
        bar = tqdm(unit="files", desc=f"syncing {source.name}")

        def progress(report):
            bar.update(report.seen - bar.n)
            bar.set_postfix(new=report.new, changed=report.changed, failed=report.failed, refresh=False)

        report = file_sources.run_sync(source, progress=progress)
        bar.close()
        if report is None:
            raise CommandError(f"Another sync of {source.name} is running; try again when it ends.")
        self.stdout.write(f"Synced {source.name}: {report.summary()}.")
        for failure in report.failures:
            self.stdout.write(f"  failed: {failure['key']}: {failure['reason']}")
        if report.failed > len(report.failures):
            self.stdout.write(f"  ... and {report.failed - len(report.failures):,} more")
        if report.error:
            raise CommandError(f"The sync of {source.name} stopped: {report.error}. Nothing was removed.")

    def _preview(self, mapping):
        figures = tables.measure(mapping)
        self.stdout.write(
            f"{mapping.qualified_name}: {figures.rows:,} rows to embed, about {figures.estimated_tokens:,} tokens."
        )
        for row in tables.preview(mapping):
            self.stdout.write(f"--- {row['key']}  {row['title']}")
            self.stdout.write(row["content"][:500])

    def list(self, json: bool = False, **_):
        rows = source_figures.for_all(get_provider().model_id)
        if json:
            self.stdout.write(jsonlib.dumps([row.as_dict() for row in rows], indent=2, default=str))
            return
        for row in rows:
            self.stdout.write(
                f"{row.name:<20} {row.kind:<8} {row.state:<10} rows {row.rows:>9,}  fresh {row.fresh:,} "
                f"stale {row.stale:,} missing {row.missing:,} failed {row.failed:,} queued {row.queued:,}"
                + (f"\n    {row.reason}" if row.reason else "")
            )

    def resync(self, name, **_):
        source = sources.by_name(name)
        bar = tqdm(unit="rows", desc="re-rendering")

        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)

        sources.resync(source, progress=progress)
        bar.close()
        source.refresh_from_db()
        self.stdout.write(f"Resynced {source.name}: {source.rows_done:,} rows; changed texts are queued.")

    def pause(self, name, **_):
        taken = sources.pause(sources.by_name(name))
        self.stdout.write(f"Paused {name}: {taken} queued items taken off the queue; nothing more is queued.")

    def resume(self, name, **_):
        queued = sources.resume(sources.by_name(name), get_provider().model_id)
        self.stdout.write(f"Resumed {name}: {queued} documents queued.")

    def detach(self, name, yes, **_):
        source = sources.by_name(name)
        counts = sources.detach_counts(source)
        summary = (
            f"{counts.documents:,} documents, {counts.embeddings:,} embeddings and {counts.live_items:,} queued "
            f"items of source {source.name}"
        )
        if not yes:
            raise CommandError(
                f"Detaching removes {summary}; the table itself is not touched. Add --yes to do it."
            )
        if source.kind == Source.Kind.BUILTIN:
            raise CommandError("Sidecar's own documents are not an attached source.")
        sources.detach(source)
        self.stdout.write(f"Detached: removed {summary}. The table is as it was.")
