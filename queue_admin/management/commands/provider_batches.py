from django.core.management.base import BaseCommand, CommandError

from queue_admin import provider_batches
from queue_admin.models import ProviderBatch


class Command(BaseCommand):
    help = (
        "Show the provider batches (backfills through the Batch API: `backfill --batch-api`); "
        "--advance sends, polls and writes them now instead of at the next minute's schedule; "
        "--cancel cancels one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--advance", action="store_true", help="take every open batch one step on now")
        parser.add_argument(
            "--cancel", metavar="ID", help="cancel this batch (Sidecar's id or the provider's)"
        )
        parser.add_argument("--limit", type=int, default=20, help="show this many of the latest (default 20)")

    def handle(self, *args, **options):
        if options["cancel"]:
            batch = self._find(options["cancel"])
            try:
                batch = provider_batches.cancel(batch.id, cancelled_by="provider_batches command")
            except provider_batches.NotAvailable as error:
                raise CommandError(str(error)) from None
            self.stdout.write(self.style.SUCCESS(f"{batch.id}: {batch.get_state_display()}."))
        if options["advance"]:
            provider_batches.advance_all()
        batches = ProviderBatch.objects.all()[: options["limit"]]
        if not batches:
            self.stdout.write("No provider batches.")
        for batch in batches:
            counts = batch.request_counts or {}
            at_provider = (
                f", provider {batch.provider_batch_id} {batch.provider_status} "
                f"{counts.get('completed', 0)}/{counts.get('total', 0)} requests"
                if batch.provider_batch_id
                else ""
            )
            self.stdout.write(
                f"{batch.id} {batch.get_state_display()}: {batch.documents} documents{at_provider}; "
                f"{batch.completed} completed, {batch.failed} failed, {batch.returned} returned to the queue"
                + (f" — {batch.error_message}" if batch.error_message else "")
            )

    def _find(self, given: str) -> ProviderBatch:
        batch = ProviderBatch.objects.filter(provider_batch_id=given).first()
        if batch is None:
            try:
                batch = ProviderBatch.objects.filter(pk=given).first()
            except Exception:  # not a UUID
                batch = None
        if batch is None:
            raise CommandError(f"No provider batch {given!r}; `manage.py provider_batches` lists them.")
        return batch
