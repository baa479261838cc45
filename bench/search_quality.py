"""Scenario `quality`: search quality on the shipped labelled set, each mode, one run.

Steps: load the demo's sample documents (the first 500 docstrings of the standard library,
`load_sample_documents`), embed them with the configured provider (the local model by default)
through one in-process worker, resolve the shipped judgments (documents/sample_judgments.jsonl)
to their ids, and run `search_quality.evaluate` (each mode, k = 10) — what `manage.py
evaluate_search` and the Search quality page run. Reported: recall@10, MRR and nDCG@10 per mode;
whether hybrid is at least the better of vector and keyword on nDCG@10; and, for the queries
that are one identifier (`urlsafe_b64decode`), the share whose relevant documents keyword search
returns in its first ten.

Not a speed measurement: the figures are deterministic for a model, a chunking and a corpus.
"""

import re

from bench import common

SAMPLES = 500  # the sample documents the shipped judgments were written against
# --quick: the first 100 samples, and the judged queries whose documents are among them (the
# figures then say little: it checks that the code runs).
QUICK_SAMPLES = 100
K = 10
# A query that is one identifier (letters, digits, _ and .; no spaces): the kind of query that
# keyword search exists for.
IDENTIFIER = re.compile(r"[A-Za-z_][\w.]*")


def embed_samples(provider, count: int) -> None:
    from django.test.utils import override_settings

    from documents.samples import load_sample_documents
    from queue_admin.worker import QueueWorker

    load_sample_documents(count)
    with override_settings(DEBUG=False), QueueWorker(provider, name="bench-quality") as worker:
        worker.run(until_empty=True)


def identifier_queries_found(queries: dict[str, set[str]]) -> tuple[int, int]:
    """(identifier queries whose relevant documents keyword search returns in its first K,
    identifier queries)."""
    from queue_admin import searching

    identifiers = [query for query in queries if IDENTIFIER.fullmatch(query)]
    found = 0
    for query in identifiers:
        ranked = {str(hit.document_id) for hit in searching.search(query, K, mode="keyword").hits}
        found += queries[query] <= ranked
    return found, len(identifiers)


def run(*, size: int | None, quick: bool, corpus_name: str, words_per_doc: int) -> common.ScenarioResult:
    from documents.providers.factory import get_provider
    from queue_admin import search_quality

    provider = get_provider()
    samples = QUICK_SAMPLES if quick else SAMPLES
    result = common.ScenarioResult(
        "quality",
        f"the demo's first {samples} sample documents (standard-library docstrings) and the shipped judgments",
        {"documents": samples, "k": K, "model": provider.model_id},
    )
    common.empty_tables()  # the judgments go with the documents (their foreign key cascades)
    embed_samples(provider, samples)
    recorded, missing = search_quality.load_sample_judgments()
    result.parameters["judged_titles_not_loaded"] = len(missing)
    if missing and not quick:  # the shipped set names only documents of the first 500
        result.notes.append(f"{len(missing)} judged titles not among the samples: {', '.join(missing)}")
    queries = search_quality.test_set()
    result.parameters.update(queries=len(queries), judgments=recorded)
    metrics = search_quality.evaluate(queries, K, ran_from="bench").metrics
    for mode, figures in metrics.items():
        result.add(f"{mode}_recall_10", f"{mode}: recall@{K}", figures["recall"], "ratio")
        result.add(f"{mode}_mrr", f"{mode}: MRR", figures["mrr"], "ratio")
        result.add(f"{mode}_ndcg_10", f"{mode}: nDCG@10", figures["ndcg_10"], "ratio")
    better = max(metrics["vector"]["ndcg_10"], metrics["keyword"]["ndcg_10"])
    ratio = metrics["hybrid"]["ndcg_10"] / better if better else 0.0
    result.add(
        "hybrid_vs_best_single_ndcg", "hybrid nDCG@10 / the better of vector and keyword", ratio, "ratio",
        ">= 1.0", ratio >= 1.0,
    )  # fmt: skip
    found, identifiers = identifier_queries_found(queries)
    share = found / identifiers if identifiers else 0.0
    result.add(
        "keyword_identifier_share", f"keyword: identifier queries found in its top {K} ({found} of {identifiers})",
        share, "ratio", "1.0", identifiers > 0 and found == identifiers,
    )  # fmt: skip
    return result
