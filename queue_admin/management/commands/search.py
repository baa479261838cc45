from json import dumps

from django.core.management.base import BaseCommand, CommandError

from documents.keyword_index import KeywordIndexError
from documents.search import DEFAULT_MODE, MODES, SearchError, parse_metadata_filter, parse_time
from queue_admin.searching import search


class Command(BaseCommand):
    help = "Search from the shell: the k documents that best answer the query (hybrid by default)."

    def add_arguments(self, parser):
        parser.add_argument("query")
        parser.add_argument("-k", type=int, default=5, help="how many documents (default 5, at most 100)")
        parser.add_argument(
            "--mode", choices=MODES, default=DEFAULT_MODE,
            help="hybrid: vector and keyword lists fused (default); vector: by meaning; keyword: by words",
        )  # fmt: skip
        parser.add_argument("--source", metavar="NAME", help="only documents of this source (`source list`)")
        parser.add_argument(
            "--filter",
            metavar="JSON",
            help='only documents whose metadata contains this, e.g. \'{"lang": "en"}\'',
        )
        parser.add_argument(
            "--updated-after", metavar="WHEN", help="only documents updated at or after (2026-01-31)"
        )
        parser.add_argument("--updated-before", metavar="WHEN", help="only documents updated before")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args, query, k, mode, json: bool, source=None, **options):
        try:
            result = search(
                query, k, mode=mode, source=source,
                metadata=parse_metadata_filter(options["filter"]) if options["filter"] is not None else None,
                updated_after=_time(options["updated_after"], "--updated-after"),
                updated_before=_time(options["updated_before"], "--updated-before"),
            )  # fmt: skip
        except (SearchError, KeywordIndexError) as exc:
            raise CommandError(str(exc)) from None
        if json:
            self.stdout.write(dumps(result.as_dict(), indent=2))
            return
        self.stdout.write(f"model {result.model}, {result.mode}" + (
            f" ({result.documents_not_covered} documents not embedded yet)" if result.documents_not_covered else ""
        ))  # fmt: skip
        for notice in result.notices:
            self.stderr.write(notice)
        for rank, hit in enumerate(result.hits, 1):
            self.stdout.write(f"{rank:>3}. {hit.score:.3f}  {hit.citation if hit.title else hit.document_id}")
            where = "" if hit.source_key == hit.document_id else f"{hit.source} {hit.source_key} · "
            # Matches in «»: a terminal shows no highlighting, and the text is not HTML.
            snippet = "".join(
                f"«{part['text']}»" if part["match"] else part["text"] for part in hit.snippet_parts
            )
            self.stdout.write(f"       {where}{' '.join(snippet.split())[:200]}")


def _time(text: str | None, name: str):
    return parse_time(text, name) if text is not None else None
