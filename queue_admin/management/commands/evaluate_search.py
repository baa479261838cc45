import json

from django.core.management.base import BaseCommand, CommandError

from documents.keyword_index import KeywordIndexError
from documents.providers.base import EmbeddingError
from documents.search import SearchError
from queue_admin import search_quality


class Command(BaseCommand):
    help = (
        "Measure search against a test set (the stored judgments, or a JSON Lines file): recall@k, MRR and "
        "nDCG@10 for each mode. The run is stored and shown on the admin's Search quality page."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "file",
            nargs="?",
            help='a JSON Lines test set: {"query": "...", "relevant": ["<document id>", ...]}',
        )
        parser.add_argument("-k", type=int, default=10, help="the depth of recall and MRR (default 10)")
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")

    def handle(self, *args, file=None, k: int, json: bool, **options):
        try:
            if file:
                with open(file, encoding="utf-8") as lines:
                    queries = search_quality.read_jsonl(lines)
            else:
                queries = search_quality.test_set()
            run = search_quality.evaluate(queries, k, ran_from="shell")
        except (OSError, ValueError, SearchError, KeywordIndexError, EmbeddingError) as exc:
            raise CommandError(str(exc)) from None
        if json:
            self.stdout.write(_json(run))
            return
        self.stdout.write(
            f"{run.queries} queries, model {run.model}, chunks of {run.chunking['max_tokens']} tokens "
            f"(overlap {run.chunking['overlap_tokens']}), ef_search {run.search_settings['ef_search']}, "
            f"text config {run.search_settings['text_config']}, RRF k {run.search_settings['rrf_k']}"
        )
        self.stdout.write(f"{'mode':<8} {f'recall@{k}':>10} {'MRR':>7} {'nDCG@10':>8} {'queries':>8}")
        for mode, figures in run.metrics.items():
            self.stdout.write(
                f"{mode:<8} {figures['recall']:>10.3f} {figures['mrr']:>7.3f} {figures['ndcg_10']:>8.3f} {run.queries:>8}"
            )


def _json(run) -> str:
    return json.dumps(
        {
            "id": run.pk,
            "ran_at": run.ran_at.isoformat(),
            "queries": run.queries,
            "k": run.k,
            "model": run.model,
            "chunking": run.chunking,
            "search_settings": run.search_settings,
            "metrics": run.metrics,
            "per_query": run.per_query,
        },
        indent=2,
    )
