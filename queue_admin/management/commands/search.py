from json import dumps

from django.core.management.base import BaseCommand, CommandError

from documents.search import SearchError
from queue_admin.searching import semantic_search


class Command(BaseCommand):
    help = "Semantic search from the shell: the k documents closest to the query text."

    def add_arguments(self, parser):
        parser.add_argument("query")
        parser.add_argument("-k", type=int, default=5, help="how many documents (default 5, at most 100)")
        parser.add_argument("--source", metavar="NAME", help="only documents of this source (`source list`)")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args, query, k, json: bool, source=None, **options):
        try:
            result = semantic_search(query, k, source=source)
        except SearchError as exc:
            raise CommandError(str(exc)) from None
        if json:
            self.stdout.write(dumps(result.as_dict(), indent=2))
            return
        self.stdout.write(f"model {result.model}" + (
            f" ({result.documents_not_covered} documents not embedded yet)" if result.documents_not_covered else ""
        ))  # fmt: skip
        for rank, hit in enumerate(result.hits, 1):
            self.stdout.write(f"{rank:>3}. {hit.score:.3f}  {hit.citation if hit.title else hit.document_id}")
            where = "" if hit.source_key == hit.document_id else f"{hit.source} {hit.source_key} · "
            self.stdout.write(f"       {where}{' '.join(hit.snippet.split())[:160]}")
