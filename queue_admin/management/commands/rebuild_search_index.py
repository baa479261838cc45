from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from documents import keyword_index


class Command(BaseCommand):
    help = (
        "Make keyword search use SEARCH_TEXT_CONFIG (after changing it): every chunk's words again, in "
        "batches, while searches and workers go on. Run again to finish an interrupted rebuild."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--config", metavar="NAME",
            help=f"a text search configuration of the database (default SEARCH_TEXT_CONFIG: {settings.SEARCH_TEXT_CONFIG})",
        )  # fmt: skip

    def handle(self, *args, config=None, **options):
        with tqdm(unit="chunks", desc="rebuilding keyword index", dynamic_ncols=True) as bar:

            def progress(done: int, total: int):
                bar.total = total
                bar.update(done - bar.n)

            try:
                result = keyword_index.rebuild(config, progress=progress)
            except keyword_index.KeywordIndexError as exc:
                raise CommandError(str(exc)) from None
        before = repr(result.previous) if result.previous else "nothing"
        if result.previous == result.config and not result.chunks:
            self.stdout.write(
                f"Keyword search already uses {result.config!r} for every chunk; nothing to do."
            )
        else:
            self.stdout.write(
                f"Keyword search: {before} → {result.config!r}; {result.chunks:,} chunks indexed again "
                f"in {result.seconds:.1f} s."
            )
        if result.config != settings.SEARCH_TEXT_CONFIG:
            self.stdout.write(
                f"SEARCH_TEXT_CONFIG is still {settings.SEARCH_TEXT_CONFIG!r}: set it to {result.config!r} too, "
                "or searches will keep saying that they differ."
            )
