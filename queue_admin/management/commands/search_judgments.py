from django.core.management.base import BaseCommand, CommandError

from queue_admin import search_quality


class Command(BaseCommand):
    help = (
        "The search test set: `export FILE` writes the stored judgments as JSON Lines, `import FILE` records a "
        "file's (all lines or none), `load-samples` records the shipped judgments of the sample documents."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["export", "import", "load-samples"])
        parser.add_argument(
            "file", nargs="?", help="the JSON Lines file (export, import; - for stdout on export)"
        )

    def handle(self, *args, action: str, file=None, **options):
        if action == "load-samples":
            recorded, missing = search_quality.load_sample_judgments()
            self.stdout.write(f"Recorded {recorded} judgments of the sample documents.")
            if missing:
                self.stdout.write(
                    f"{len(missing)} judged documents are not loaded here (a smaller --limit?)."
                )
            return
        if not file:
            raise CommandError(f"{action} needs a FILE.")
        try:
            if action == "export":
                if file == "-":
                    count = search_quality.export_jsonl(self.stdout)
                    return
                with open(file, "w", encoding="utf-8") as out:
                    count = search_quality.export_jsonl(out)
                self.stdout.write(f"Exported {count} queries to {file}.")
            else:
                with open(file, encoding="utf-8") as lines:
                    count = search_quality.import_jsonl(lines)
                self.stdout.write(f"Imported {count} judgments from {file}.")
        except (OSError, search_quality.JudgmentFileError) as exc:
            raise CommandError(str(exc)) from None
