from django.core.management.base import BaseCommand

from documents.samples import load_sample_documents


class Command(BaseCommand):
    help = "Load real sample documents built from the Python standard library's docstrings."

    def add_arguments(self, parser):
        parser.add_argument(
            "--limit",
            type=int,
            default=500,
            help="how many sample documents there should be in all (default 500)",
        )

    def handle(self, *args, limit, **options):
        inserted, present = load_sample_documents(limit)
        self.stdout.write(
            self.style.SUCCESS(
                f"Loaded {inserted} sample documents ({present} were already there); "
                "the database triggers queued them for embedding."
            )
        )
