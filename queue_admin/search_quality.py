"""Search quality, measured by the people who run it: their judgments (this document answers
this query, or does not), the test set they make, and evaluation runs that measure every
search mode against it.

A test set is {query: {relevant document ids}}: the judged queries with at least one relevant
document. Its file form is JSON Lines, one query a line:
`{"query": "...", "relevant": ["<document id>", ...]}`.

The figures, binary relevance, one query at a time and averaged over the set:
recall@k (the share of its relevant documents in the first k), reciprocal rank (1 / the rank of
the first relevant one within k, 0 if none; averaged: MRR) and nDCG@10 (the discounted gain of
the first ten, divided by the best possible for that many relevant documents).
"""

import json
import math
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction

from documents.models import EvaluationRun, SearchJudgment, SourceDocument, normalize_query
from documents.samples import SOURCE as SAMPLE_SOURCE
from documents.search import MODES, RRF_K
from queue_admin import searching
from queue_admin.worker import CHUNK_OVERLAP_TOKENS

NDCG_DEPTH = 10
# Built from the demo's sample corpus; keyed by title, since document ids are made at load.
SAMPLE_JUDGMENTS = Path(__file__).resolve().parent.parent / "documents" / "sample_judgments.jsonl"


class JudgmentFileError(ValueError):
    """A test set file that cannot be read; the message lists every bad line by number."""


# --- Judgments and the test set ----------------------------------------------------------------


def judge(query: str, document_id, relevant: bool, user=None) -> SearchJudgment:
    """Record that `document_id` does (or does not) answer `query`; judging again updates."""
    judgment, _ = SearchJudgment.objects.update_or_create(
        query=normalize_query(query),
        document_id=document_id,
        defaults={"relevant": relevant, "judged_by": user},
    )
    return judgment


def judgments_for(query: str, document_ids) -> dict[str, bool]:
    """{document id: relevant} for those of `document_ids` judged for `query`."""
    found = SearchJudgment.objects.filter(query=normalize_query(query), document_id__in=list(document_ids))
    return {str(document): relevant for document, relevant in found.values_list("document_id", "relevant")}


def test_set() -> dict[str, set[str]]:
    """{query: {relevant document ids}} from the stored judgments."""
    found: dict[str, set[str]] = {}
    for query, document in SearchJudgment.objects.filter(relevant=True).values_list("query", "document_id"):
        found.setdefault(query, set()).add(str(document))
    return found


def export_jsonl(file) -> int:
    """Write the test set to a text file, one query a line, sorted; returns the line count."""
    queries = test_set()
    for query in sorted(queries):
        file.write(
            json.dumps({"query": query, "relevant": sorted(queries[query])}, ensure_ascii=False) + "\n"
        )
    return len(queries)


def read_jsonl(file) -> dict[str, set[str]]:
    """The test set in a JSON Lines file, every line checked first (JSON, keys, document ids
    that exist); a JudgmentFileError lists each bad line by number. Blank lines are skipped."""
    entries, errors = [], []
    for number, line in enumerate(file, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: not JSON ({exc.msg})")
            continue
        if not isinstance(entry, dict) or set(entry) != {"query", "relevant"}:
            keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
            errors.append(f'line {number}: expected the keys "query" and "relevant", found {keys}')
            continue
        query, relevant = entry["query"], entry["relevant"]
        if not isinstance(query, str) or not normalize_query(query):
            errors.append(f'line {number}: "query" must be a non-empty string')
            continue
        if not isinstance(relevant, list) or not relevant or not all(isinstance(i, str) for i in relevant):
            errors.append(f'line {number}: "relevant" must be a non-empty list of document ids')
            continue
        entries.append((number, normalize_query(query), relevant))
    known = _existing_documents({document for _, _, ids in entries for document in ids})
    found: dict[str, set[str]] = {}
    for number, query, ids in entries:
        unknown = [document for document in ids if _canonical(document) not in known]
        if unknown:
            errors.append(f"line {number}: no document with the id {', '.join(unknown)}")
            continue
        found.setdefault(query, set()).update(_canonical(document) for document in ids)
    if errors:
        raise JudgmentFileError("; ".join(errors))
    return found


def import_jsonl(file, user=None) -> int:
    """Mark every (query, document) of the file relevant; all lines or none. Returns how many
    judgments were recorded."""
    queries = read_jsonl(file)
    with transaction.atomic():
        for query, documents in queries.items():
            for document in documents:
                judge(query, document, True, user)
    return sum(len(documents) for documents in queries.values())


def _canonical(document_id: str) -> str | None:
    try:
        return str(uuid.UUID(document_id))
    except ValueError:
        return None


def _existing_documents(ids) -> set[str]:
    valid = {canonical for canonical in map(_canonical, ids) if canonical}
    return {str(pk) for pk in SourceDocument.objects.filter(pk__in=valid).values_list("pk", flat=True)}


def load_sample_judgments(path: Path = SAMPLE_JUDGMENTS) -> tuple[int, list[str]]:
    """The shipped judgments of the sample corpus (`load_sample_documents`), titles resolved
    to the ids of the sample documents loaded here. Titles not loaded (a smaller --limit) are
    skipped and returned. Returns (judgments recorded, titles not found)."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    titles = {title for line in lines for title in line["relevant_titles"]}
    ids = dict(
        SourceDocument.objects.filter(metadata__source=SAMPLE_SOURCE, title__in=titles).values_list(
            "title", "pk"
        )
    )
    recorded = 0
    with transaction.atomic():
        for line in lines:
            for title in line["relevant_titles"]:
                if title in ids:
                    judge(line["query"], ids[title], True)
                    recorded += 1
    return recorded, sorted(titles - set(ids))


# --- Metrics ---------------------------------------------------------------------------------


def recall_at_k(ranked: list[str], relevant: set[str], k: int) -> float:
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def reciprocal_rank(ranked: list[str], relevant: set[str], k: int) -> float:
    for rank, document in enumerate(ranked[:k], start=1):
        if document in relevant:
            return 1 / rank
    return 0.0


def ndcg_at_10(ranked: list[str], relevant: set[str]) -> float:
    gain = sum(1 / math.log2(rank + 1) for rank, doc in enumerate(ranked[:NDCG_DEPTH], 1) if doc in relevant)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(relevant), NDCG_DEPTH) + 1))
    return gain / ideal if ideal else 0.0


# --- Evaluation ------------------------------------------------------------------------------


def evaluate(
    queries: dict[str, set[str]], k: int = 10, *, user=None, ran_from: str = "shell"
) -> EvaluationRun:
    """Search every query of the test set in every mode, and store the run with its figures
    and what they were measured under. Errors of search (the provider down) propagate."""
    if not queries:
        raise ValueError("The test set is empty: judge some search results first, or import a file.")
    depth = max(k, NDCG_DEPTH)  # nDCG@10 needs ten results whatever k is
    provider = searching.choose_provider()
    metrics, per_query = {}, [{"query": q, "relevant": len(queries[q]), "ranks": {}} for q in sorted(queries)]
    for mode in MODES:
        totals = {"recall": 0.0, "mrr": 0.0, "ndcg_10": 0.0}
        for detail in per_query:
            relevant = queries[detail["query"]]
            ranked = [hit.document_id for hit in searching.search(detail["query"], depth, mode=mode).hits]
            totals["recall"] += recall_at_k(ranked, relevant, k)
            totals["mrr"] += reciprocal_rank(ranked, relevant, k)
            totals["ndcg_10"] += ndcg_at_10(ranked, relevant)
            detail["ranks"][mode] = [rank for rank, doc in enumerate(ranked, 1) if doc in relevant]
        metrics[mode] = {name: round(total / len(queries), 4) for name, total in totals.items()}
    return EvaluationRun.objects.create(
        ran_by=user,
        ran_from=ran_from,
        queries=len(queries),
        k=k,
        model=provider.model_id,
        chunking={"max_tokens": provider.max_input_tokens, "overlap_tokens": CHUNK_OVERLAP_TOKENS},
        search_settings={
            "ef_search": settings.SEARCH_EF_SEARCH,
            "text_config": settings.SEARCH_TEXT_CONFIG,
            "rrf_k": RRF_K,
        },
        metrics=metrics,
        per_query=per_query,
    )
