"""Search queries over the sidecar, one model at a time: checking a query and its filters,
embedding it (with a cache), the two ranked lists — the chunks nearest to the query's vector
(the HNSW index) and the chunks that match its words best (full text, over the terms that
documents/keyword_index.py keeps) — their fusion, and the hits with their highlighted snippets.

Three modes: `vector`, `keyword`, and `hybrid` (the default), which fuses the two lists by
reciprocal rank: each document scores the sum of 1 / (RRF_K + its rank) over the lists that
found it. Ranks, not scores, because cosine similarities and text ranks are on unrelated
scales; a document near the top of both lists beats one at the top of only one. Filters
(source, metadata, time) are conditions of both lists' queries, not a sieve afterwards.

Vectors of different models live in unrelated spaces, so one search uses the rows of exactly
one model. Which model, and whether the provider may be asked at all, is the engine's choice
(`queue_admin.searching`), which callers use.
"""

import hashlib
import json
import math
import re
import unicodedata
import uuid
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, time

import numpy as np
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import dateparse, timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from documents import keyword_index, vector_index
from documents.models import ChunkTerms, DocumentEmbedding
from documents.validators import validate_json_object
from embedding_site.db.base import version_tuple

MAX_RESULTS = 100
MAX_QUERY_CHARACTERS = 10_000
# RAG clients repeat the same questions; the cache (settings.CACHES, bounded, short TTL) lets
# a repeat skip the model, which is most of a search's time.
QUERY_EMBEDDING_CACHE = "query_embeddings"
# Whitespace a pasted paragraph may carry; every other control character is refused.
ALLOWED_CONTROL_CHARACTERS = "\t\n\r"

MODES = ("hybrid", "vector", "keyword")
DEFAULT_MODE = "hybrid"
# Reciprocal rank fusion's constant (Cormack et al.'s 60): how much a top rank outweighs a
# lower one; larger flattens the difference.
RRF_K = 60
# How many documents each list hands the fusion, at least: deep enough that a document
# ranked well in one list and far down the other still gets both contributions.
FUSION_DEPTH = 50
# Several chunks of one document often rank close together: a list reads this many chunks
# per document it wants, and keeps each document's best.
CHUNKS_PER_DOCUMENT = 4
MAX_CANDIDATE_CHUNKS = 1000  # pgvector's hnsw.ef_search cannot go higher
# A filter that keeps this share of a model's chunks still fills the vector list: the
# iterative index scan may read (chunks wanted / share) tuples before it gives up.
SMALLEST_FILTER_SHARE = 0.01
PGVECTOR_MAX_SCAN_TUPLES = 20_000  # pgvector's default; never lowered
# A filter that keeps at most this many documents is searched exactly: their chunks are read
# through the documents' indexes and every distance computed, which for a thousand chunks is
# cheaper than an iterative index scan walking a hundred times that many to find the ones that
# pass (and finds the true nearest). Counting stops here, so a broad filter costs one short
# count. Chosen from `python -m bench search` (docs/benchmarks.md).
EXACT_SEARCH_MAX_DOCUMENTS = 5_000
MAX_FILTER_CHARACTERS = 2_000
# ts_headline marks matches with these (private-use characters, removed from the text first,
# so they cannot come from a document); hits carry the marked parts as data, never as HTML.
_MATCH_START, _MATCH_STOP = "\ue000", "\ue001"
_HEADLINE_OPTIONS = f"StartSel={_MATCH_START}, StopSel={_MATCH_STOP}, MaxWords=35, MinWords=15"
_MARKED = re.compile(f"{_MATCH_START}(.*?){_MATCH_STOP}", re.S)
# The configuration of snippets when keyword search is not set up (vector mode still works).
_FALLBACK_TEXT_CONFIG = "simple"


class SearchError(ValueError):
    """A query that cannot be searched; the message says why."""


@dataclass(frozen=True)
class Hit:
    document_id: str
    title: str
    # What ranked it: the fused score in hybrid mode (sum of 1 / (60 + rank) over the lists
    # that found it), the cosine similarity in vector mode, the keyword rank in keyword mode.
    score: float
    snippet: str  # plain text around the best chunk's matches
    model: str
    source: str  # the source's name
    # Its key in the source (a table row's primary key, as text; a JSON array for a composite
    # key), to join it back; for Sidecar's own documents, the document id.
    source_key: str
    # Where the best chunk is in a parsed file: its PDF page and heading path, when known.
    page: int | None = None
    heading: str = ""
    chunk_index: int = 0  # the chunk the snippet comes from
    # Cosine similarity of its best chunk (1 is identical), and ts_rank of its best matching
    # chunk; None where that list did not find it (or was not searched).
    vector_score: float | None = None
    keyword_score: float | None = None
    # The snippet as parts, the query's words marked: [{"text": "...", "match": true}, ...].
    # Callers escape each part themselves (the admin's page wraps matches in <mark>).
    snippet_parts: tuple = ()

    @property
    def citation(self) -> str:
        """'manual.pdf, page 12 — Installation › Proxies', as much of it as is known."""
        where = self.title + (f", page {self.page}" if self.page is not None else "")
        return where + (f" — {self.heading}" if self.heading else "")


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    model: str
    documents_not_covered: int  # documents with text that this model has not embedded yet
    mode: str = DEFAULT_MODE
    # The text search configuration that keyword matching and snippets used.
    text_config: str | None = None
    notices: tuple[str, ...] = ()  # what a caller should know, e.g. a rebuild the index needs

    def as_dict(self) -> dict:
        """The JSON shape of the search API and `search --json`."""
        return {
            "model": self.model,
            "mode": self.mode,
            "text_config": self.text_config,
            "documents_not_covered": self.documents_not_covered,
            "notices": list(self.notices),
            "results": [asdict(hit) for hit in self.hits],
        }


@dataclass(frozen=True)
class Filters:
    """Which documents a search may return; applied inside both lists' queries."""

    source_id: int | None = None
    metadata: dict = field(default_factory=dict)  # the document's metadata must contain this (jsonb @>)
    updated_after: datetime | None = None  # inclusive
    updated_before: datetime | None = None  # exclusive

    def conditions(self) -> tuple[str, list]:
        """(" AND ..." on the documents, aliased d, params); ("", []) when nothing is filtered."""
        sql, params = [], []
        if self.source_id is not None:
            sql.append("d.source_id = %s")
            params.append(self.source_id)
        if self.metadata:
            sql.append("d.metadata @> %s::jsonb")
            params.append(json.dumps(self.metadata))
        if self.updated_after is not None:
            sql.append("d.updated_at >= %s")
            params.append(self.updated_after)
        if self.updated_before is not None:
            sql.append("d.updated_at < %s")
            params.append(self.updated_before)
        return "".join(f" AND {condition}" for condition in sql), params


@dataclass(frozen=True)
class Candidate:
    """One document in a ranked list: its best chunk there and that chunk's score."""

    document_id: uuid.UUID
    chunk_id: int
    score: float


def embed_query(provider, query: str, before_embedding: Callable | None = None) -> np.ndarray:
    """The query's vector, from the cache when this model embedded the same text recently;
    otherwise `before_embedding(provider)` runs first (it may refuse by raising) and the
    provider embeds it.

    The key hashes the model id, its dimensions and the text: a different model (or a
    changed EMBEDDING_DIMENSIONS) never gets another's vector, and the text itself is not
    kept as a key. Provider errors propagate and nothing is cached for them.
    """
    cache = caches[QUERY_EMBEDDING_CACHE]
    key_material = f"{provider.model_id}\0{provider.dimensions}\0{query}".encode("utf-8", "surrogatepass")
    key = "query:" + hashlib.sha256(key_material).hexdigest()
    vector = cache.get(key)
    if vector is None:
        if before_embedding is not None:
            before_embedding(provider)
        vector = provider.embed([query]).vectors[0]
        cache.set(key, vector)
    return vector


# --- Checking what callers send -------------------------------------------------------------


def check_query(query) -> None:
    """Refuse, with the reason, a query that is not text a person typed: empty, too long, or
    holding NUL or other control characters, lone surrogates (undecodable bytes from the
    command line) or U+FFFD (what Django makes of bytes in a URL or form that are not UTF-8).
    The search API, the admin's page and `manage.py search` all go through here."""
    if not isinstance(query, str) or not query.strip():
        raise SearchError("The query is empty: type a few words to search for.")
    if len(query) > MAX_QUERY_CHARACTERS:
        raise SearchError(f"The query has {len(query):,} characters; the most is {MAX_QUERY_CHARACTERS:,}.")
    _check_text(query, "The query")


def _check_text(text: str, what: str) -> None:
    if "\x00" in text:
        raise SearchError(f"{what} contains a NUL byte.")
    for position, character in enumerate(text, start=1):
        if unicodedata.category(character) == "Cc" and character not in ALLOWED_CONTROL_CHARACTERS:
            raise SearchError(
                f"{what} contains a control character (U+{ord(character):04X}) at position {position}; "
                "remove it and search again."
            )
        if "\ud800" <= character <= "\udfff" or character == "\ufffd":
            raise SearchError(
                f"{what} is not valid UTF-8 text: character {position} stands for bytes that could not "
                "be decoded. Send it as UTF-8."
            )


def check_k(k: int) -> None:
    if not 1 <= k <= MAX_RESULTS:
        raise SearchError(f"k must be between 1 and {MAX_RESULTS}, not {k}.")


def check_mode(mode) -> None:
    if mode not in MODES:
        raise SearchError(f"mode must be one of {', '.join(MODES)}, not {str(mode)[:40]!r}.")


def parse_metadata_filter(text: str) -> dict:
    """The metadata filter a caller typed as JSON (`{"lang": "en", "tenant": 42}`)."""
    if len(text) > MAX_FILTER_CHARACTERS:
        raise SearchError(f"The filter has {len(text):,} characters; the most is {MAX_FILTER_CHARACTERS:,}.")
    _check_text(text, "The filter")
    try:
        # NaN and Infinity are Python's extensions to JSON; jsonb has neither.
        value = json.loads(text, parse_constant=_refuse_json_constant)
    except (ValueError, RecursionError) as exc:
        raise SearchError(
            f'The filter is not valid JSON ({str(exc)[:100]}); send an object like {{"lang": "en"}}.'
        ) from None
    return check_metadata_filter(value)


def _refuse_json_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def check_metadata_filter(value) -> dict:
    """`value` if it is a JSON object that documents' metadata can be compared with."""
    try:
        validate_json_object(value)  # the rules of the metadata it is compared with
    except ValidationError as exc:
        message = (
            exc.messages[0]
            .replace("Metadata must be", "The filter must be")
            .replace("Metadata", "The filter")
        )
        raise SearchError(message) from None
    return value


def parse_time(text: str, name: str) -> datetime:
    """A date (midnight UTC) or a date and time (UTC unless it says otherwise), as typed."""
    text = text.strip()
    try:
        moment = dateparse.parse_datetime(text)
        if moment is None and (day := dateparse.parse_date(text)) is not None:
            moment = datetime.combine(day, time())
    except ValueError:  # the shape of a date, but no such day or time (2026-02-30)
        moment = None
    if moment is None:
        raise SearchError(
            f"{name} must be a date or a date and time, like 2026-01-31 or 2026-01-31T09:30:00Z; "
            f"not {text[:40]!r}."
        )
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, UTC)


def check_time_range(updated_after: datetime | None, updated_before: datetime | None) -> None:
    if updated_after is not None and updated_before is not None and updated_after >= updated_before:
        raise SearchError(
            f"updated_after ({updated_after.isoformat()}) is not before updated_before "
            f"({updated_before.isoformat()}): no document could match."
        )


# --- The search ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    hits: list[Hit]
    configs: keyword_index.Configs  # the text search configuration(s) of keyword search


def search_documents(
    model: str, query: str, k: int, mode: str, filters: Filters, vector: np.ndarray | None = None
) -> Found:
    """The `k` best documents for `query` among `model`'s chunks that pass `filters`: by
    `vector` (the query's embedding; not needed in keyword mode), by the query's words, or
    both fused. Every list keeps each document's best chunk; a hit's snippet comes from its
    best keyword chunk where it has one (its words are what the reader will look for), else
    from its nearest chunk."""
    depth = max(k * 4, FUSION_DEPTH) if mode == "hybrid" else k
    with transaction.atomic():
        configs, indexed = _set_up_search(_chunks_wanted(depth), model)
        if mode != "vector" and configs.config is None:
            raise keyword_index.missing_config_error()
        words = _query_words(query, configs)
        lists: dict[str, list[Candidate]] = {}
        if mode != "keyword":
            lists["vector"] = _vector_list(model, vector, depth, filters, indexed)
        if mode != "vector":
            lists["keyword"] = _keyword_list(model, words, depth, filters)
        if mode == "hybrid":
            ranked = reciprocal_rank_fusion(list(lists.values()))[:k]
        else:
            ranked = [(candidate.document_id, candidate.score) for candidate in lists[mode][:k]]
        hits = _hits(ranked, lists, words, model, configs.config or _FALLBACK_TEXT_CONFIG)
    return Found(hits, configs)


def _query_words(query: str, configs: keyword_index.Configs) -> tuple[str, list]:
    """(SQL for the query's tsquery, its params): the words as keyword search's configuration
    reads them, and during a change of configuration as the previous one reads them too (the
    chunks not rebuilt yet hold its words). websearch_to_tsquery reads what people type (words,
    "quoted phrases", or, -not) and never fails on syntax: &, |, !, :* and stray quotes are
    just text; a query of nothing but stop words or punctuation becomes an empty query, which
    matches nothing."""
    config = configs.config or _FALLBACK_TEXT_CONFIG
    if configs.rebuilding_from is None:
        return "websearch_to_tsquery(%s::regconfig, %s)", [config, query]
    return (
        "(websearch_to_tsquery(%s::regconfig, %s) || websearch_to_tsquery(%s::regconfig, %s))",
        [config, query, configs.rebuilding_from, query],
    )


def reciprocal_rank_fusion(lists: list[list[Candidate]], rrf_k: int = RRF_K) -> list[tuple[uuid.UUID, float]]:
    """[(document id, fused score)], best first: each document scores the sum of
    1 / (rrf_k + its rank) over the lists that hold it (ranks from 1). Ties keep the order in
    which the lists first name the documents."""
    scores: dict[uuid.UUID, float] = {}
    for candidates in lists:
        for rank, candidate in enumerate(candidates, start=1):
            scores[candidate.document_id] = scores.get(candidate.document_id, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


def _chunks_wanted(documents: int) -> int:
    return min(documents * CHUNKS_PER_DOCUMENT, MAX_CANDIDATE_CHUNKS)


# Per database connection (psycopg's, so a reconnect asks again): whether the server's
# pgvector has iterative index scans (0.8+).
_iterative_scan: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _set_up_search(chunks: int, model: str) -> tuple[keyword_index.Configs, bool]:
    """For the current transaction: make the HNSW index look at enough candidates for
    `chunks` rows (SEARCH_EF_SEARCH at least), and on pgvector >= 0.8 let the scan go on until
    enough rows pass the model and the filters (iterative scan), up to a filter keeping
    SMALLEST_FILTER_SHARE of the rows: the index filters only after its search, so a filter
    could otherwise leave a handful of the k results. Answers keyword search's text search
    configuration(s), read in the same statement.

    All in one statement, local to the transaction: a session setting would save the
    transaction around the search, but would leak to whoever gets the server connection next
    behind a transaction pooler, which the web processes may use (docs/deployment.md).
    """
    connection.ensure_connection()
    raw = connection.connection
    iterative = _iterative_scan.get(raw)
    with connection.cursor() as cursor:
        if iterative is None:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
            iterative = _iterative_scan[raw] = row is not None and version_tuple(row[0]) >= (0, 8)
        statement, params = (
            "SELECT set_config('hnsw.ef_search', %s, true)",
            [str(max(settings.SEARCH_EF_SEARCH, chunks))],
        )
        if iterative:
            statement += (
                ", set_config('hnsw.iterative_scan', 'relaxed_order', true)"
                ", set_config('hnsw.max_scan_tuples', %s, true)"
            )
            params.append(str(max(PGVECTOR_MAX_SCAN_TUPLES, math.ceil(chunks / SMALLEST_FILTER_SHARE))))
        cursor.execute(
            f"{statement}, {keyword_index.CURRENT_CONFIGS}, ({vector_index.USABLE_INDEX})",
            [*params, vector_index.index_name(model)],
        )
        *_, config, rebuilding_from, indexed = cursor.fetchone()
        return keyword_index.Configs(config, rebuilding_from), bool(indexed)


def _join_documents(filters: Filters, chunks: str) -> tuple[str, str, list]:
    """(the join of the table aliased `chunks` to source_documents, " AND ..." conditions,
    params); no join when nothing is filtered, which saves a lookup per chunk read."""
    conditions, params = filters.conditions()
    join = f" JOIN source_documents d ON d.id = {chunks}.document_id" if conditions else ""
    return join, conditions, params


def _vector_list(
    model: str, vector: np.ndarray, documents: int, filters: Filters, indexed: bool
) -> list[Candidate]:
    """The `documents` documents whose best chunk is nearest to `vector`, best first: through
    the HNSW index, or exactly over the documents a selective filter keeps."""
    join, conditions, params = _join_documents(filters, "e")
    query_vector = DocumentEmbedding._meta.get_field("embedding").get_prep_value(vector)
    # "+ 0" makes the order an expression the HNSW index cannot serve, so the planner reads
    # the kept documents' chunks through their indexes and sorts them by exact distance.
    exact = bool(conditions) and _few_documents_pass(filters)
    if exact:
        order = "(e.embedding <=> %s::vector) + 0"
    elif indexed:
        # The index's own expression (halfvec), or the planner cannot use it; the score stays
        # the full vectors' distance, and the rows are sorted by it below.
        order = vector_index.nearest_order("%s::vector")
    else:
        order = "e.embedding <=> %s::vector"  # no index: the model is small, read exactly
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT e.id, e.document_id, e.embedding <=> %s::vector AS distance
                  FROM document_embeddings e{join}
                 WHERE e.model = %s{conditions}
                 ORDER BY {order}
                 LIMIT %s""",
            [query_vector, model, *params, query_vector, _chunks_wanted(documents)],
        )
        rows = cursor.fetchall()
    # relaxed_order: an iterative scan may hand rows back slightly out of order; and the
    # index orders by halfvec distance, the score is the full one.
    rows.sort(key=lambda row: row[2])
    best: dict[uuid.UUID, Candidate] = {}
    for chunk_id, document_id, distance in rows:
        if document_id not in best:
            best[document_id] = Candidate(document_id, chunk_id, round(1 - float(distance), 4))
    return list(best.values())[:documents]


def _few_documents_pass(filters: Filters) -> bool:
    """Whether `filters` keep at most EXACT_SEARCH_MAX_DOCUMENTS documents (counted through
    the metadata, source and time indexes, and never further than one past the limit)."""
    conditions, params = filters.conditions()
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT count(*) FROM (
                    SELECT FROM source_documents d WHERE true{conditions} LIMIT %s
                ) kept""",
            [*params, EXACT_SEARCH_MAX_DOCUMENTS + 1],
        )
        return cursor.fetchone()[0] <= EXACT_SEARCH_MAX_DOCUMENTS


def _keyword_list(model: str, words: tuple[str, list], documents: int, filters: Filters) -> list[Candidate]:
    """The `documents` documents whose best chunk matches the query's `words` best (ts_rank
    over the stored terms, found through their GIN index), best first."""
    join, conditions, params = _join_documents(filters, "t")
    tsquery, tsquery_params = words
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT chunk_id, document_id, rank FROM (
                    SELECT DISTINCT ON (t.document_id) t.embedding_id AS chunk_id, t.document_id,
                           ts_rank(t.terms, words.query) AS rank
                      FROM {ChunkTerms._meta.db_table} t{join}, (SELECT {tsquery} AS query) words
                     WHERE t.model = %s AND t.terms @@ words.query{conditions}
                     ORDER BY t.document_id, rank DESC, t.embedding_id
                ) best
                ORDER BY rank DESC, document_id
                LIMIT %s""",
            [*tsquery_params, model, *params, documents],
        )
        return [
            Candidate(document_id, chunk_id, round(float(rank), 6)) for chunk_id, document_id, rank in cursor
        ]


def _hits(
    ranked: list[tuple[uuid.UUID, float]],
    lists: dict[str, list[Candidate]],
    words: tuple[str, list],
    model: str,
    config: str,
) -> list[Hit]:
    """The hits for the ranked documents: title, source and key, the chosen chunk's place and
    its snippet with the query's words marked (ts_headline, over that chunk only)."""
    found = {
        name: {candidate.document_id: candidate for candidate in candidates}
        for name, candidates in lists.items()
    }
    chosen = {}
    for document_id, _score in ranked:
        candidate = found.get("keyword", {}).get(document_id) or found["vector"][document_id]
        chosen[document_id] = candidate.chunk_id
    if not chosen:
        return []
    tsquery, tsquery_params = words
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT e.id, e.chunk_index, d.title, s.name, coalesce(d.source_key, d.id::text), e.page, e.heading,
                       ts_headline(%s::regconfig, translate(e.source_text, %s, ''), {tsquery}, %s),
                       translate(e.source_text, %s, ''),
                       EXISTS (SELECT 1 FROM document_embeddings n
                                WHERE n.document_id = e.document_id AND n.model = e.model
                                  AND n.chunk_index = e.chunk_index + 1)
                  FROM document_embeddings e
                  JOIN source_documents d ON d.id = e.document_id
                  JOIN document_sources s ON s.id = d.source_id
                 WHERE e.id = ANY(%s)""",
            [
                config,
                _MATCH_START + _MATCH_STOP,
                *tsquery_params,
                _HEADLINE_OPTIONS,
                _MATCH_START + _MATCH_STOP,
                list(chosen.values()),
            ],  # fmt: skip
        )
        chunks = {row[0]: row[1:] for row in cursor.fetchall()}
    hits = []
    for document_id, score in ranked:
        chunk_index, title, source, source_key, page, heading, headline, chunk_text, more = chunks[
            chosen[document_id]
        ]
        parts = word_bounded_snippet(
            _snippet_parts(headline), chunk_text, first_chunk=chunk_index == 0, last_chunk=not more
        )
        vector, keyword = found.get("vector", {}).get(document_id), found.get("keyword", {}).get(document_id)
        hits.append(
            Hit(
                str(document_id),
                title,
                round(score, 6),
                "".join(part["text"] for part in parts),
                model,
                source,
                source_key,
                page,
                heading,
                chunk_index,
                vector.score if vector else None,
                keyword.score if keyword else None,
                parts,
            )  # fmt: skip
        )
    return hits


def _snippet_parts(headline: str) -> tuple[dict, ...]:
    """ts_headline's text, split at its match markers: ({"text": ..., "match": bool}, ...)."""
    parts, position = [], 0
    for marked in _MARKED.finditer(headline):
        if marked.start() > position:
            parts.append({"text": headline[position : marked.start()], "match": False})
        parts.append({"text": marked.group(1), "match": True})
        position = marked.end()
    if position < len(headline):
        parts.append({"text": headline[position:], "match": False})
    return tuple(parts)


ELLIPSIS = "…"


def word_bounded_snippet(
    parts: tuple[dict, ...], chunk_text: str, *, first_chunk: bool, last_chunk: bool
) -> tuple[dict, ...]:
    """The snippet's parts, never starting or ending inside a word, with an ellipsis where text
    was left out. ts_headline cuts at words, but it may show a chunk from its very start or to
    its very end, and chunks are cut at the model's tokens, which can fall inside a word: a
    chunk after the first may begin with the tail of a word, one before the last may end with
    the head of one. Those partial words are dropped."""
    parts = [dict(part) for part in parts if part["text"]]
    if not parts:
        return ()
    # Compare words only: ts_headline leaves out what PostgreSQL's parser reads as tags.
    snippet = _words("".join(part["text"] for part in parts))
    text = _words(re.sub(r"<[^>]*>", " ", chunk_text))
    edge = min(8, len(snippet))
    from_the_start, to_the_end = text[:edge] == snippet[:edge], text[-edge:] == snippet[-edge:]
    text = chunk_text.strip()
    cut_before = not from_the_start or not first_chunk
    cut_after = not to_the_end or not last_chunk
    if from_the_start and not first_chunk and text[:1].isalnum():
        _drop_partial_word(parts, at_start=True)
    if to_the_end and not last_chunk and text[-1:].isalnum():
        _drop_partial_word(parts, at_start=False)
    if not parts:
        return ()
    parts[0]["text"] = parts[0]["text"].lstrip()
    parts[-1]["text"] = parts[-1]["text"].rstrip()
    if cut_before:
        parts.insert(0, {"text": ELLIPSIS + " ", "match": False})
    if cut_after:
        parts.append({"text": " " + ELLIPSIS, "match": False})
    return tuple(part for part in parts if part["text"])


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def _drop_partial_word(parts: list[dict], *, at_start: bool) -> None:
    """Remove the word at the snippet's start (or end): the characters up to its first (after
    its last) white space, across as many parts as it spans."""
    ordered = parts if at_start else parts[::-1]
    for part in list(ordered):
        text = part["text"] if at_start else part["text"][::-1]
        space = re.search(r"\s", text)
        if space is None:  # the whole part is inside the partial word
            parts.remove(part)
            continue
        kept = text[space.start() :]
        part["text"] = kept if at_start else kept[::-1]
        return


# Relevance bands, from the cosine similarity of a hit's best chunk to the query (the one
# figure with a meaning of its own: fused and keyword scores only order a list). Measured with
# the default model (all-MiniLM-L6-v2): unrelated text scores about 0 to 0.25, a passage on the
# query's topic 0.3 to 0.5, a close paraphrase above 0.5. Other models spread differently.
STRONG_SIMILARITY = 0.5
WEAK_BELOW_SIMILARITY = 0.3
BANDS = ("strong", "good", "weak")

SCORE_MEANINGS = {
    "hybrid": gettext_lazy(
        "Fused rank: the sum of 1 / (60 + rank) over the vector and keyword lists that found "
        "the document (at most about 0.033). It orders the list; it is not a percentage."
    ),
    "vector": gettext_lazy(
        "Cosine similarity of the best passage to the query: 1 is the same meaning, about 0 unrelated."
    ),
    "keyword": gettext_lazy(
        "Keyword rank (PostgreSQL ts_rank): how often and how close together the query's "
        "words occur. It orders the list; it has no fixed scale."
    ),
}
# The bands as people read them (the codes above stay English: CSS classes, the API's field):
# by name in a score's explanation, and as the search page's badge.
BAND_NAMES = {"strong": gettext_lazy("strong"), "good": gettext_lazy("good"), "weak": gettext_lazy("weak")}
BAND_LABELS = {**BAND_NAMES, "weak": gettext_lazy("weak match")}


def relevance(hit: Hit) -> str:
    """'strong', 'good' or 'weak' from the best chunk's cosine similarity. A hit only the keyword
    search found contains the query's words, so it is at least 'good'."""
    if hit.vector_score is None:
        return "good"
    if hit.vector_score >= STRONG_SIMILARITY:
        return "strong"
    if hit.vector_score >= WEAK_BELOW_SIMILARITY:
        return "good"
    return "weak"


def relevance_explained(hit: Hit, mode: str) -> str:
    """The tooltip of a hit's score: what the number means in this mode, and why its band."""
    if hit.vector_score is None:
        why = _("found by its words only (no similarity measured)")
    else:
        why = _("cosine similarity %(score)s; strong from %(strong)s, weak below %(weak)s") % {
            "score": f"{hit.vector_score:.2f}",
            "strong": STRONG_SIMILARITY,
            "weak": WEAK_BELOW_SIMILARITY,
        }
    return _("%(meaning)s Band: %(band)s (%(why)s).") % {
        "meaning": SCORE_MEANINGS[mode],
        "band": BAND_NAMES[relevance(hit)],
        "why": why,
    }
