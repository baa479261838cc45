from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from documents import importing


class Command(BaseCommand):
    help = (
        "Import documents from a CSV or JSON Lines file (optionally gzipped). Every row is checked "
        "first; if any is bad, the problems are listed with their line numbers and nothing is written."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="a .csv, .jsonl or .ndjson file, optionally .gz")
        parser.add_argument(
            "--format", choices=importing.FORMATS, help="the file's format (default: from its name)"
        )
        parser.add_argument("--dry-run", action="store_true", help="check the file and count; write nothing")

    def handle(self, *args, file, format, dry_run, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"{file} is not a file.")
        try:
            file_format = importing.detect_format(path.name, format)
        except importing.UnknownFormat as exc:
            raise CommandError(f"{exc} (--format csv|jsonl)") from None

        with self._progress(path, "checking") as bar:
            report = importing.check_file(path, file_format, progress=bar.update)
        if not report.ok:
            for problem in report.problems:
                self.stderr.write(str(problem))
            hidden = report.problem_count - len(report.problems)
            if hidden:
                self.stderr.write(f"... and {hidden} more.")
            raise CommandError(
                f"{report.problem_count} problem(s) in {path.name} ({report.rows} rows); nothing was written."
            )
        self.stdout.write(f"{report.rows} documents: {report.new} new, {report.updates} updates.")
        if dry_run:
            self.stdout.write("Dry run: nothing was written.")
            return

        try:
            with self._progress(path, "importing") as bar:
                result = importing.write_file(path, file_format, progress=bar.update)
        except importing.ImportRefused as exc:
            for problem in exc.problems:
                self.stderr.write(str(problem))
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {result.created + result.updated} documents ({result.created} created, "
                f"{result.updated} updated); {result.queued} queued for embedding."
            )
        )

    def _progress(self, path: Path, description: str):
        # By bytes read: the number of rows is not known until the file has been read. Written to
        # the raw stream: Django's wrapper would end each redraw with a newline.
        return tqdm(
            total=path.stat().st_size,
            unit="B",
            unit_scale=True,
            desc=description,
            dynamic_ncols=True,
            file=self.stderr._out,
        )
