"""Search results people can read: relevance bands from the cosine similarity (weak for a
nonsense query with the local model), and snippets that never start or end inside a word."""

import pytest

from documents import search
from documents.models import SourceDocument
from documents.providers.local import LocalEmbeddingProvider
from documents.search import ELLIPSIS, Hit, relevance, relevance_explained, word_bounded_snippet
from queue_admin import searching
from tests.documents.test_search import embed_all_with, fresh_caches  # noqa: F401 - autouse fixture


def _hit(vector_score):
    return Hit("id", "title", 0.5, "text", "m", "own", "id", vector_score=vector_score)


def _text(parts):
    return "".join(part["text"] for part in parts)


@pytest.mark.parametrize(
    "similarity, band",
    [(0.9, "strong"), (search.STRONG_SIMILARITY, "strong"), (0.49, "good"),
     (search.WEAK_BELOW_SIMILARITY, "good"), (0.29, "weak"), (-0.1, "weak"), (None, "good")],
)  # fmt: skip
def test_the_band_comes_from_the_cosine_similarity(similarity, band):
    assert relevance(_hit(similarity)) == band


def test_the_tooltip_says_what_the_number_means_in_each_mode():
    assert "1 / (60 + rank)" in relevance_explained(_hit(0.2), "hybrid")
    assert "Cosine similarity" in relevance_explained(_hit(0.2), "vector")
    assert "ts_rank" in relevance_explained(_hit(None), "keyword")
    assert "Band: weak (cosine similarity 0.20" in relevance_explained(_hit(0.2), "hybrid")
    assert "found by its words only" in relevance_explained(_hit(None), "keyword")


CHUNK = "ation of the proxy settings is described in the manual for every install"


def test_a_continuation_chunks_partial_first_and_last_words_are_dropped():
    parts = ({"text": CHUNK, "match": False},)
    tidy = word_bounded_snippet(parts, CHUNK, first_chunk=False, last_chunk=False)
    assert _text(tidy) == f"{ELLIPSIS} of the proxy settings is described in the manual for every {ELLIPSIS}"


def test_a_whole_document_snippet_is_left_whole():
    text = "The proxy settings are described in the manual."
    parts = (
        {"text": "The ", "match": False},
        {"text": "proxy", "match": True},
        {"text": " settings are described in the manual.", "match": False},
    )
    assert word_bounded_snippet(parts, text, first_chunk=True, last_chunk=True) == parts


def test_a_snippet_from_the_middle_of_a_chunk_gets_ellipses_and_keeps_its_marks():
    text = "Before anything else. The proxy settings are described here. And more text follows after."
    parts = (
        {"text": "The ", "match": False},
        {"text": "proxy", "match": True},
        {"text": " settings are described here.", "match": False},
    )
    tidy = word_bounded_snippet(parts, text, first_chunk=True, last_chunk=True)
    assert _text(tidy) == f"{ELLIPSIS} The proxy settings are described here. {ELLIPSIS}"
    assert [part["text"] for part in tidy if part["match"]] == ["proxy"]


def test_a_partial_word_across_parts_is_dropped_whole():
    text = "ings proxy end"
    parts = (
        {"text": "ings", "match": False},
        {"text": " ", "match": False},
        {"text": "proxy", "match": True},
        {"text": " end", "match": False},
    )
    tidy = word_bounded_snippet(parts, text, first_chunk=False, last_chunk=True)
    assert _text(tidy) == f"{ELLIPSIS} proxy end"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_config")
def test_a_nonsense_query_gets_weak_matches_and_a_real_one_a_strong_match():
    texts = {
        "cat": "A cat is sleeping on the warm living-room rug.",
        "stocks": "Shares fell sharply as investors worried about interest rates.",
        "python": "The function returns a sorted list of the dictionary's keys.",
    }
    for key, text in texts.items():
        SourceDocument.objects.create(title=key, content=text)
    embed_all_with(LocalEmbeddingProvider())
    nonsense = searching.search("qwxz blorft zzyzx", k=3, mode="vector")
    assert nonsense.hits and {relevance(hit) for hit in nonsense.hits} == {"weak"}
    real = searching.search("a cat sleeping on a rug", k=3, mode="vector")
    assert real.hits[0].title == "cat" and relevance(real.hits[0]) == "strong"
    assert relevance(real.hits[-1]) == "weak"
