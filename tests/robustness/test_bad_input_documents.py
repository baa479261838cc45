"""Bad document input: each kind is refused with a clear error and nothing
changes, or — for text that is unusual but fine — embedded by the real local model.

Kinds already tested elsewhere are not repeated here; docs/reliability-inputs.md lists every
kind with the test that covers it.
"""

import random
import resource
import time
import tracemalloc

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from documents.models import DocumentEmbedding, SourceDocument
from documents.providers.local import LocalEmbeddingProvider, _load_tokenizers
from queue_admin.models import QueueItem
from queue_admin.worker import QueueWorker, md5_hex
from tests import state
from tests.fakes import FakeEmbedderForQueueTests

INLINE = {"embeddings-TOTAL_FORMS": "0", "embeddings-INITIAL_FORMS": "0"}


def run_worker(provider):
    with QueueWorker(provider, name="bad-input") as worker:
        return worker.run()


@pytest.fixture(scope="module")
def local_model():
    return LocalEmbeddingProvider()


# --- Unusual but good text: the real model embeds it into chunks --------------------------------

random_token = "".join(random.Random(7).choices("abcdefghijklmnopqrstuvwxyz0123456789", k=100_000))
GOOD_BUT_UNUSUAL = {
    "right-to-left (Arabic)": "تقوم قاعدة البيانات بتخزين المستندات وتحديث المتجهات تلقائيا عند كل تعديل. "
    * 40,
    "right-to-left (Hebrew) mixed with English": "המערכת שומרת את המסמכים ב-PostgreSQL ומעדכנת embeddings. "
    * 40,
    "CJK (Chinese and Japanese), no spaces": "数据库会在每次修改后自动更新向量。" * 150
    + "検索は意味で文書を見つけます。" * 100,
    "Korean": "문서가 바뀔 때마다 임베딩이 자동으로 갱신됩니다. " * 60,
    "emoji, ZWJ sequences, flags, skin tones": "Deploy 🚀 done ✅ by 👩🏽‍💻 and 👨‍👩‍👧‍👦 from 🇳🇿 🇯🇵 — 🔥"
    * 30,
    "combining marks and zero-width characters": "Zalgo t̷̢̛e̵͎͝x̶̡̛t̴̰̾ with zero\u200bwidth\u200djoiners " * 50,
    "a single 100,000-character token": random_token,
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_config")
def test_unusual_scripts_emoji_and_a_giant_token_are_embedded_into_chunks(local_model):
    docs = {
        case: SourceDocument.objects.create(title=case[:100], content=text)
        for case, text in GOOD_BUT_UNUSUAL.items()
    }
    report = run_worker(local_model)
    assert report.completed == len(docs) and report.failed == 0
    for case, doc in docs.items():
        item = QueueItem.objects.get(document=doc)
        assert (item.status, item.error_message) == ("completed", ""), case
        rows = list(DocumentEmbedding.objects.filter(document=doc).order_by("chunk_index"))
        assert rows, case
        assert {row.document_text_hash for row in rows} == {md5_hex(doc.content)}, case
        for row in rows:
            vector = np.asarray(row.embedding, dtype=np.float32)
            assert np.isfinite(vector).all() and abs(np.linalg.norm(vector) - 1) < 1e-3, case
            assert row.source_text in doc.content, case
        assert doc.content.startswith(rows[0].source_text) and doc.content.rstrip().endswith(
            rows[-1].source_text
        ), case
        # A chunk that starts or ends inside a word re-tokenizes a token or two longer than its
        # span (a "##" piece becomes a word start); the model then drops that much of its end,
        # which the next chunk's 32-token overlap holds anyway.
        assert max(local_model.count_tokens([row.source_text for row in rows])) <= 256 + 4, case
    cjk_rows = DocumentEmbedding.objects.filter(document=docs["CJK (Chinese and Japanese), no spaces"])
    assert cjk_rows.count() > 1  # cut by the model's tokenizer, not at (absent) spaces


def test_tokenizing_in_segments_cuts_exactly_where_tokenizing_whole_would(local_model):
    """token_spans tokenizes long texts a segment at a time to bound memory; the tokens must be
    the ones the whole text gives, or chunks would differ from the model's view."""
    from documents.providers import local

    words = ["Sidecar", "keeps", "vectors", "fresh,", "ünïcödé", "数据库", "emoji🚀", "end."]
    text = " ".join(random.Random(3).choice(words) for _ in range(70_000))  # ~3 segments
    assert len(text) > 2 * local.SPAN_SEGMENT_CHARACTERS
    whole = _load_tokenizers().counting.encode(text, add_special_tokens=False).offsets
    assert local_model.token_spans(text).tolist() == [list(span) for span in whole]


def test_chunking_a_10_mb_text_holds_megabytes_not_gigabytes(local_model):
    """The local model's tokenizer over a 10 MB text in one call held ~1.8 GB (its encoding
    plus a Python tuple per token); in segments it holds the offsets array."""
    from documents.chunking import split_into_chunks

    text = ("Sidecar keeps embeddings of a PostgreSQL table up to date, automatically. " * 150_000)[
        : 10 * 1024 * 1024
    ]
    local_model.count_tokens(["load the tokenizer first"])
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    chunks = split_into_chunks(text, max_tokens=256, overlap_tokens=32, token_spans=local_model.token_spans)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
    assert len(chunks) > 7_000 and text.endswith(chunks[-1])
    assert grown < 600 * 1024 * 1024, f"peak memory grew by {grown / 2**20:.0f} MiB"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_config")
def test_a_50_mb_text_is_refused_by_the_worker_with_the_reason_and_memory_stays_bounded(local_model):
    doc = SourceDocument.objects.create(title="fifty megabytes", content="An earlier, short text.")
    run_worker(FakeEmbedderForQueueTests())
    earlier = list(DocumentEmbedding.objects.filter(document=doc).values_list("id", "document_text_hash"))
    fifty_mb = ("All work and no play makes Jack a dull boy. " * 1_200_000)[: 50 * 1024 * 1024]
    SourceDocument.objects.filter(pk=doc.pk).update(content=fifty_mb)  # the trigger queues it

    tracemalloc.start()
    started = time.monotonic()
    report = run_worker(local_model)
    seconds = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    item = QueueItem.objects.filter(document=doc).latest("created_at")
    assert (report.failed, item.status, item.error_kind) == (1, "failed", "permanent")
    assert "the text has 52,428,800 characters, more than the 20,000,000" in item.error_message
    assert "EMBEDDING_MAX_DOCUMENT_CHARACTERS" in item.error_message and "split it" in item.error_message
    # Nothing written: the earlier embedding is still there, untouched.
    assert (
        list(DocumentEmbedding.objects.filter(document=doc).values_list("id", "document_text_hash"))
        == earlier
    )
    # Reading the text is the cost (bytes from PostgreSQL, then a str): no tokenizing, no chunks.
    assert peak < 4 * len(fifty_mb), f"Python memory peaked at {peak / 2**20:.0f} MiB"
    assert seconds < 30


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_config")
def test_the_length_limit_is_a_setting_and_the_limit_itself_is_embedded(settings):
    settings.EMBEDDING_MAX_DOCUMENT_CHARACTERS = 1_000
    at_limit = SourceDocument.objects.create(content="a" * 999 + "b")
    over = SourceDocument.objects.create(content="a" * 1_000 + "b")
    run_worker(FakeEmbedderForQueueTests())
    assert QueueItem.objects.get(document=at_limit).status == "completed"
    refused = QueueItem.objects.get(document=over)
    assert refused.status == "failed" and "1,001 characters, more than the 1,000" in refused.error_message
    assert not DocumentEmbedding.objects.filter(document=over).exists()


# --- Refused with a message, nothing written -----------------------------------------------------

REFUSED_BY_THE_MODEL = {
    "metadata with NaN": ({"metadata": {"score": float("nan")}}, "Metadata at metadata.score is nan"),
    "metadata with Infinity": ({"metadata": {"w": [1, float("inf")]}}, "metadata.w[1] is inf"),
    "title over 500 characters": ({"title": "t" * 501}, "at most 500 characters"),
    "title with a NUL byte": ({"title": "a\x00b"}, "NUL byte"),
    "content that is a number": ({"content": 42}, None),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", REFUSED_BY_THE_MODEL, ids=list(REFUSED_BY_THE_MODEL))
def test_bad_fields_are_refused_by_the_model_and_nothing_is_written(case):
    fields, says = REFUSED_BY_THE_MODEL[case]
    before = state.fingerprint()
    try:
        SourceDocument.objects.create(**{"content": "fine", **fields})
    except ValidationError as exc:
        if says:
            assert says in " ".join(sum(exc.message_dict.values(), [])), exc.message_dict
    else:
        # Django turns a number into its text ("42"): harmless, and then it is a document.
        assert case == "content that is a number"
        assert SourceDocument.objects.get().content == "42"
        return
    assert state.changed_tables(before, state.fingerprint()) == []


DEEP = 100_000
ADMIN_METADATA = {
    "JSON nested 1,000 deep": ("[" * 1000 + "]" * 1000, "nests too deeply to read"),
    "JSON nested 100,000 deep": ("[" * DEEP + "]" * DEEP, "nests too deeply to read"),
    "objects nested 40 deep": ('{"a": ' * 40 + "1" + "}" * 40, "nests deeper than 32 levels"),
    "NaN": ('{"score": NaN}', "is nan, which JSON cannot hold"),
    "1e999 (Infinity)": ('{"big": 1e999}', "is inf, which JSON cannot hold"),
    "a list": ("[1, 2]", "must be a JSON object"),
    "not JSON": ("{source: wiki}", "Enter a valid JSON"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", ADMIN_METADATA, ids=list(ADMIN_METADATA))
def test_the_admin_refuses_bad_metadata_next_to_the_field_never_a_500(admin_client, document, case):
    typed, says = ADMIN_METADATA[case]
    admin_client.raise_request_exception = False
    before = state.fingerprint()
    for url in (
        "/admin/documents/sourcedocument/add/",
        f"/admin/documents/sourcedocument/{document.pk}/change/",
    ):
        response = admin_client.post(url, {"title": "t", "content": "new text", "metadata": typed, **INLINE})
        assert response.status_code == 200, (url, response.status_code)
        errors = response.context["adminform"].form.errors
        assert says in " ".join(errors.get("metadata", [])), errors
    assert state.changed_tables(before, state.fingerprint()) == []


# --- Queue items whose document is gone ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_config")
def test_a_queue_item_whose_document_no_longer_exists_is_closed_and_writes_nothing():
    """The foreign key normally deletes a document's items with it; a writer that bypasses
    triggers (replication with session_replication_role = replica) can leave one behind."""
    import uuid

    gone = uuid.uuid4()
    good = SourceDocument.objects.create(content="a document that still exists")
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # FK checks are triggers too
        try:
            QueueItem.objects.create(document_id=gone, priority="high")
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")
    report = run_worker(FakeEmbedderForQueueTests())
    orphan = QueueItem.objects.get(document_id=gone)
    assert orphan.status not in QueueItem.LIVE_STATUSES
    assert not DocumentEmbedding.objects.filter(document_id=gone).exists()
    assert QueueItem.objects.get(document=good).status == "completed"
    assert report.claimed == 2
