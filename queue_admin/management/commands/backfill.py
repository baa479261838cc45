import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from documents.providers.factory import get_provider
from queue_admin import backfill, provider_batches, sources

# Two sessions halve the time on a 2-core database server (1,000,000 documents: `python -m
# bench backfill`); more help only where the server has the cores.
DEFAULT_PARALLEL = 2


class Command(BaseCommand):
    help = (
        "Queue documents whose embeddings are missing or stale (the default: both), or all of "
        "them with --all; documents whose last attempt failed or was cancelled only with "
        "--include-failed. Set-based in SQL; --dry-run only counts."
    )

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group()
        which.add_argument(
            "--missing", action="store_true", help="only documents with no embedding for the model"
        )
        which.add_argument("--stale", action="store_true", help="only documents whose text or model changed")
        which.add_argument("--all", action="store_true", help="every document, re-embedded even if unchanged")
        parser.add_argument("--priority", choices=["high", "medium", "low"], default="low")
        parser.add_argument("--limit", type=int, help="queue at most this many documents")
        parser.add_argument("--source", metavar="NAME", help="only documents of this source (`source list`)")
        parser.add_argument(
            "--dry-run", action="store_true", help="print counts and estimates; change nothing"
        )
        parser.add_argument("--wait", action="store_true", help="show progress until the backlog is drained")
        parser.add_argument(
            "--batch-api", action="store_true",
            help="send the documents through the provider's Batch API (openai only: half the price, answered "
            "within 24 hours) instead of the workers; `provider_batches` shows how they are doing",
        )  # fmt: skip
        parser.add_argument(
            "--include-failed", action="store_true",
            help="also queue documents whose last attempt failed or was cancelled by a person (left "
            "out by default: they would fail again)",
        )  # fmt: skip
        parser.add_argument(
            "--parallel", type=int, default=DEFAULT_PARALLEL, metavar="N",
            help=f"queue in N database sessions at once, each a part of the documents (default "
            f"{DEFAULT_PARALLEL}; the work is PostgreSQL's, one core per session)",
        )  # fmt: skip

    def handle(self, *args, **options):
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be a positive number of documents.")
        if not 1 <= options["parallel"] <= 64:
            raise CommandError("--parallel must be between 1 and 64 database sessions.")
        kind = (
            backfill.MISSING if options["missing"] else
            backfill.STALE if options["stale"] else
            backfill.ALL if options["all"] else backfill.MISSING_OR_STALE
        )  # fmt: skip
        model = get_provider().model_id
        include_held = options["include_failed"]
        try:
            source_id = sources.by_name(options["source"]).pk if options["source"] else None
        except sources.SourceError as exc:
            raise CommandError(str(exc)) from None
        selection = backfill.count(
            kind, model, limit=options["limit"], include_held=include_held, source_id=source_id
        )
        self.stdout.write(
            f"{selection.documents} documents to embed ({kind.replace('_', ' ')}, model {model}), "
            f"about {selection.estimated_tokens:,} tokens."
        )
        if selection.held_back:
            self.stdout.write(
                f"Left out: {selection.held_back} documents whose last attempt failed or was cancelled "
                "(retry them from Dead letters, or add --include-failed)."
            )
        if options["dry_run"]:
            self._estimates(selection)
            return
        if options["batch_api"]:
            self._through_batch_api(kind, options, include_held, source_id)
            return
        try:
            queued = backfill.enqueue(
                kind,
                model,
                priority=options["priority"],
                limit=options["limit"],
                include_held=include_held,
                sessions=options["parallel"],
                source_id=source_id,
            )
        except backfill.PartlyQueued as error:
            raise CommandError(str(error)) from error
        self.stdout.write(self.style.SUCCESS(f"Queued {queued} documents at {options['priority']} priority."))
        if options["wait"]:
            self._wait()

    def _through_batch_api(self, kind, options, include_held, source_id):
        try:
            batches = provider_batches.start(
                kind,
                priority=options["priority"],
                limit=options["limit"],
                include_held=include_held,
                source_id=source_id,
                started_by="backfill command",
            )
        except provider_batches.NotAvailable as error:
            raise CommandError(f"Cannot use the Batch API: {error}.") from None
        claimed = sum(batch.documents for batch in batches)
        self.stdout.write(
            f"{claimed} documents claimed into {len(batches)} provider batches; sending them now."
        )
        provider_batches.advance_all()
        for batch in batches:
            batch.refresh_from_db()
            sent = batch.provider_batch_id or "not sent yet"
            self.stdout.write(
                f"  {batch.id}: {batch.documents} documents, {batch.get_state_display()} ({sent})"
            )
        self.stdout.write(
            self.style.SUCCESS(
                "The workers' schedule polls them every minute and writes the answers; "
                "`manage.py provider_batches` shows them."
            )
        )

    def _estimates(self, selection):
        figures = backfill.estimate(selection)
        if selection.too_long:
            self.stdout.write(
                f"{selection.too_long} of them are longer than the {figures.max_document_characters:,} characters the "
                "workers embed (EMBEDDING_MAX_DOCUMENT_CHARACTERS) and will fail again: shorten or split them first."
            )
        if figures.seconds is not None:
            pace = f"{figures.rate_per_second:.1f} documents/s"
            if figures.tokens_per_second:
                pace += f", {figures.tokens_per_second:,.0f} tokens/s"
            self.stdout.write(f"Time: {figures.time_in_words}, at the pace of the last 15 minutes ({pace}).")
        else:
            self.stdout.write(
                "No documents were completed in the last 15 minutes: no measured rate to estimate time."
            )
        if figures.cost is not None:
            self.stdout.write(
                f"Estimated cost: {figures.cost:.4f} at {figures.price_per_million_tokens} per million tokens."
            )
            if provider_batches.unavailable_reason() is None:
                self.stdout.write(
                    f"Through the Batch API (--batch-api): {provider_batches.batch_cost(figures.cost):.4f}, "
                    "answered within 24 hours."
                )
        self.stdout.write("Dry run: nothing was queued.")

    def _wait(self):
        remaining = backfill.live_items()
        with tqdm(total=remaining, unit="doc", desc="embedding", dynamic_ncols=True) as bar:
            while remaining:
                time.sleep(1)
                now = backfill.live_items()
                bar.update(max(0, remaining - now))
                remaining = now
        self.stdout.write(self.style.SUCCESS("Backlog drained."))
