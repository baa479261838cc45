"""Retry dead letters from the shell: failed items back to pending, attempts reset — what the
admin's "Retry" action does (queue_admin/operations.py), for scripts and incidents."""

import uuid

from django.core.management.base import BaseCommand, CommandError

from queue_admin import operations
from queue_admin.models import QueueItem


class Command(BaseCommand):
    help = "Retry failed queue items (the dead-letter list): back to pending with attempts reset."

    def add_arguments(self, parser):
        parser.add_argument(
            "--error-kind", choices=QueueItem.ErrorKind.values, help="only failures of this kind"
        )
        parser.add_argument("--document", action="append", default=[], metavar="ID",
                            help="only this document's items (repeat for several)")  # fmt: skip
        parser.add_argument(
            "--dry-run", action="store_true", help="say how many would be retried; change nothing"
        )

    def handle(self, *args, error_kind=None, document=(), dry_run=False, **options):
        failed = QueueItem.objects.filter(status=QueueItem.Status.FAILED)
        if error_kind:
            failed = failed.filter(error_kind=error_kind)
        if document:
            try:
                ids = [uuid.UUID(value) for value in document]
            except ValueError:
                raise CommandError(f"--document must be document ids (UUIDs), not {document!r}.") from None
            failed = failed.filter(document_id__in=ids)
        if dry_run:
            self.stdout.write(f"{failed.count():,} failed items would be retried.")
            return
        outcome = operations.retry(
            failed.values_list("id", flat=True).iterator(), user="retry_failed command"
        )
        self.stdout.write(f"Retried {outcome.changed:,} of {outcome.selected:,} failed items.")
        if outcome.unchanged:
            self.stdout.write(f"{outcome.unchanged:,} left as they were: {outcome.unchanged_because}.")
