"""A parsed file's chunks keep their place — the PDF page and the heading path — from the
document's sections to the sidecar's rows and every search hit (engine, shell, API)."""

import json

import pytest
from django.core.management import call_command

from documents.chunking import MIN_SECTION_CHARACTERS, split_sections_into_chunks
from documents.models import DocumentEmbedding, SourceDocument
from documents.providers.local import LocalEmbeddingProvider
from queue_admin import searching
from queue_admin.worker import QueueWorker
from tests.fakes import FakeEmbedderForQueueTests

PROXIES = "Set HTTPS_PROXY when the network needs a proxy; the workers read it at start. " * 2
BACKUPS = "Back up the database every night and test a restore once a month. " * 2


def manual():
    text = f"Installation\n\n{PROXIES}\n\nOperations\n\n{BACKUPS}"
    sections = [
        {"start": 0, "page": 1, "heading": "Installation"},
        {"start": text.index(PROXIES), "page": 1, "heading": "Installation › Proxies"},
        {"start": text.index("Operations"), "page": 2, "heading": "Operations › Backups"},
    ]
    return text, sections


def chunk(text, sections, max_tokens=256):
    return split_sections_into_chunks(text, sections, max_tokens=max_tokens, overlap_tokens=8)


def test_each_part_is_chunked_apart_and_a_part_too_short_joins_the_next():
    text, sections = manual()
    chunks = chunk(text, sections)
    # "Installation" alone is shorter than MIN_SECTION_CHARACTERS: it joins the proxies part,
    # which cites its page and deepest heading; "Operations" joins the backups part likewise.
    assert len("Installation") < MIN_SECTION_CHARACTERS
    assert [(page, heading) for _, page, heading in chunks] == [
        (1, "Installation › Proxies"),
        (2, "Operations › Backups"),
    ]
    assert chunks[0][0].startswith("Installation") and PROXIES.strip() in chunks[0][0]
    assert "Operations" not in chunks[0][0] and BACKUPS.strip() in chunks[1][0]


def test_a_long_part_gives_several_chunks_with_the_same_place_and_text_without_sections_none():
    text = "word " * 600
    chunks = chunk(text, [{"start": 0, "page": 7, "heading": "Long"}], max_tokens=64)
    assert len(chunks) > 5 and {(page, heading) for _, page, heading in chunks} == {(7, "Long")}
    assert {(page, heading) for _, page, heading in chunk(text, None, max_tokens=64)} == {(None, "")}


def test_sections_out_of_range_or_order_lose_no_text():
    text = "alpha " * 40 + "beta " * 40
    sections = [
        {"start": 5, "page": 1, "heading": "A"},  # text before the first section belongs to it
        {"start": 10_000, "page": 2, "heading": "B"},  # past the end: an empty part
        {"start": 3, "page": 3, "heading": "C"},  # out of order: read with the part before
    ]
    chunks = chunk(text, sections)
    assert "".join(text for text, _, _ in chunks).split() == text.split()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_config")
def test_the_worker_stores_each_chunks_page_and_heading():
    text, sections = manual()
    document = SourceDocument.objects.create(title="manual.pdf", content=text, sections=sections)
    with QueueWorker(FakeEmbedderForQueueTests(), name="test") as worker:
        worker.run()
    rows = DocumentEmbedding.objects.filter(document=document).order_by("chunk_index")
    assert [(row.page, row.heading) for row in rows] == [
        (1, "Installation › Proxies"),
        (2, "Operations › Backups"),
    ]
    plain = SourceDocument.objects.create(title="notes", content="Plain text has no place to cite.")
    with QueueWorker(FakeEmbedderForQueueTests(), name="test") as worker:
        worker.run()
    assert [(row.page, row.heading) for row in plain.embeddings.all()] == [(None, "")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_config", "fresh_search_caches")
def test_a_hit_cites_file_page_and_heading_in_the_engine_the_shell_and_its_json(capsys):
    text, sections = manual()
    SourceDocument.objects.create(title="manual.pdf", content=text, sections=sections)
    SourceDocument.objects.create(title="recipes", content="Let the dough rise overnight, then bake it.")
    with QueueWorker(LocalEmbeddingProvider(), name="test") as worker:
        worker.run()
    best = searching.search("how often should the database be backed up", k=2).hits[0]
    assert (best.title, best.page, best.heading) == ("manual.pdf", 2, "Operations › Backups")
    assert best.citation == "manual.pdf, page 2 — Operations › Backups"
    call_command("search", "how often should the database be backed up", "-k", "2")
    assert "manual.pdf, page 2 — Operations › Backups" in capsys.readouterr().out
    call_command("search", "which proxy variable do the workers read", "-k", "2", "--json")
    hit = json.loads(capsys.readouterr().out)["results"][0]
    assert (hit["page"], hit["heading"]) == (1, "Installation › Proxies")
    recipes = searching.search("bread dough rising", k=1).hits[0]
    assert (recipes.title, recipes.page, recipes.heading, recipes.citation) == (
        "recipes",
        None,
        "",
        "recipes",
    )
