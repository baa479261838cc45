"""The default `local` provider: all-MiniLM-L6-v2 on onnxruntime, against the PyTorch original.

Plain tests: no database. The reference vectors come from the fp32 PyTorch build
(tests/fixtures/make_minilm_reference.py, run once); the int8 graph must stay within cosine
0.99 of every one of them.
"""

import json
import multiprocessing
import threading

import numpy as np
import pytest
from tokenizers import Tokenizer

from documents.providers import EmbeddingError, EmbeddingProvider, EmbeddingResult, local, validate_result
from documents.providers.local import LocalEmbeddingProvider
from tests.helpers import ROOT

REFERENCE = json.loads((ROOT / "tests" / "fixtures" / "minilm_reference.json").read_text("utf-8"))
REFERENCE_TEXTS = [item["text"] for item in REFERENCE["items"]]
REFERENCE_VECTORS = np.array([item["vector"] for item in REFERENCE["items"]], dtype=np.float32)
LONG_TEXT = max(
    (item for item in REFERENCE["items"] if item["tokens_untruncated"] <= local.MAX_INPUT_TOKENS),
    key=lambda item: item["tokens_untruncated"],
)["text"]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.fixture(scope="module")
def provider() -> LocalEmbeddingProvider:
    return LocalEmbeddingProvider(intra_op_threads=2)


@pytest.fixture(scope="module")
def reference_result(provider) -> EmbeddingResult:
    return provider.embed(REFERENCE_TEXTS)


def test_provider_keeps_the_contract(provider):
    assert isinstance(provider, EmbeddingProvider)
    assert provider.dimensions == 384
    assert provider.max_input_tokens == 256
    assert provider.model_id == "sentence-transformers/all-MiniLM-L6-v2@onnx-int8"


def test_vectors_are_384_float32_rows_of_unit_length(reference_result):
    vectors = reference_result.vectors
    assert vectors.shape == (len(REFERENCE_TEXTS), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_reference_was_made_with_the_models_256_token_window():
    assert REFERENCE["max_seq_length"] == 256
    assert any(item["tokens_untruncated"] > 256 for item in REFERENCE["items"])
    assert 200 <= max(
        item["tokens_untruncated"] for item in REFERENCE["items"] if item["tokens_untruncated"] <= 256
    )


@pytest.mark.parametrize("index", range(len(REFERENCE_TEXTS)), ids=lambda i: REFERENCE_TEXTS[i][:30])
def test_matches_pytorch_reference(reference_result, index):
    similarity = cosine(reference_result.vectors[index], REFERENCE_VECTORS[index])
    assert similarity >= 0.99, f"cosine {similarity:.5f} for {REFERENCE_TEXTS[index]!r}"


def test_reference_agreement_overall(reference_result):
    """The spread the int8 build is known for (DESIGN: ≥ 0.998, mean 0.999)."""
    similarities = cosine(reference_result.vectors, REFERENCE_VECTORS)
    assert similarities.min() >= 0.995
    assert similarities.mean() >= 0.999


@pytest.mark.parametrize(
    "anchor, similar, unrelated",
    [
        (
            "The cat sat on the mat.",
            "A kitten is sleeping on a rug.",
            "Quarterly revenue rose 12% this year.",
        ),
        (
            "How do I reset my password?",
            "I forgot my login password, how can I change it?",
            "The train to Berlin is late.",
        ),
        (
            "def add(a, b): return a + b",
            "function sum(x, y) { return x + y; }",
            "Le chat dort sur le canapé.",
        ),
        (
            "PostgreSQL row-level locking",
            "How does the database lock rows during updates?",
            "Recipe for banana bread",
        ),
    ],
)
def test_similar_sentences_score_higher_than_unrelated(provider, anchor, similar, unrelated):
    a, s, u = provider.embed([anchor, similar, unrelated]).vectors
    assert cosine(a, s) > cosine(a, u) + 0.1


def test_batch_equals_one_by_one_in_input_order(provider):
    """The provider sorts by length internally; the caller must get its own order back."""
    texts = [LONG_TEXT, "Hi!", "How do I reset my password?", REFERENCE_TEXTS[-1], "Hello", LONG_TEXT[:300]]
    batch = provider.embed(texts)
    singles = [provider.embed([text]) for text in texts]
    np.testing.assert_allclose(batch.vectors, np.stack([s.vectors[0] for s in singles]), atol=1e-5)
    assert batch.token_counts == [s.token_counts[0] for s in singles]


def test_sub_batches_restore_order():
    tiny_batches = LocalEmbeddingProvider(intra_op_threads=1, sub_batch_size=2)
    texts = REFERENCE_TEXTS[::-1]
    result = tiny_batches.embed(texts)
    assert min(cosine(result.vectors, REFERENCE_VECTORS[::-1])) >= 0.99


def test_200_token_text_is_not_cut_at_128(provider):
    """tokenizer.json ships with truncation at 128; the provider must read up to 256."""
    full = provider.embed([LONG_TEXT])
    assert 200 <= full.token_counts[0] <= 256
    assert provider.count_tokens([LONG_TEXT]) == full.token_counts

    prefix = first_tokens_of(LONG_TEXT, 128)
    cut = provider.embed([prefix])
    assert cut.token_counts == [128]
    assert cosine(full.vectors[0], cut.vectors[0]) < 0.98, "the text's tail past 128 tokens was ignored"


def first_tokens_of(text: str, count: int) -> str:
    """The prefix of ``text`` that tokenizes to ``count`` tokens, [CLS] and [SEP] included."""
    tokenizer = Tokenizer.from_file(str(local.TOKENIZER_PATH))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    offsets = tokenizer.encode(text, add_special_tokens=False).offsets
    return text[: offsets[count - 3][1]]


def test_text_over_the_window_is_truncated_at_256(provider):
    long_item = next(item for item in REFERENCE["items"] if item["tokens_untruncated"] > 256)
    assert provider.count_tokens([long_item["text"]]) == [long_item["tokens_untruncated"]]
    assert provider.embed([long_item["text"]]).token_counts == [256]


def test_text_over_the_graphs_512_limit_still_embeds(provider):
    result = provider.embed(["word " * 2000])
    assert result.token_counts == [256]
    assert np.isfinite(result.vectors).all()


def test_padding_is_to_the_longest_in_the_batch_not_to_128(provider):
    """A short text alone is run at its own length (no fixed 128 padding from tokenizer.json)."""
    model = local._load_model(provider.intra_op_threads)
    encodings = model.tokenizers.truncating.encode_batch(["Hello", "How do I reset my password?"])
    assert [len(e.ids) for e in encodings] == [3, 9]


def test_empty_list_gives_empty_result(provider):
    result = provider.embed([])
    assert result.vectors.shape == (0, 384)
    assert result.token_counts == []
    assert provider.count_tokens([]) == []


def test_non_string_input_is_a_permanent_error(provider):
    with pytest.raises(EmbeddingError) as caught:
        provider.embed(["fine", None])
    assert caught.value.kind == "permanent"
    assert "text 1 is NoneType" in str(caught.value)


def test_model_loads_once_per_process_even_under_concurrent_first_use(monkeypatch):
    monkeypatch.setattr(local, "_models", {})
    opened = []
    real_open = local._open_session
    monkeypatch.setattr(
        local, "_open_session", lambda threads, device: opened.append(threads) or real_open(threads, device)
    )
    barrier = threading.Barrier(4)
    loaded = []

    def first_use():
        barrier.wait()
        loaded.append(local._load_model(1))

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert opened == [1]
    assert all(model is loaded[0] for model in loaded)
    assert LocalEmbeddingProvider(intra_op_threads=1).embed(["Hello"]).vectors.shape == (1, 384)
    assert opened == [1]


def test_unknown_device_is_refused():
    with pytest.raises(ValueError, match="device must be one of cpu, cuda, got 'tpu'"):
        LocalEmbeddingProvider(device="tpu")


def test_cuda_without_onnxruntimes_cuda_provider_says_what_to_install(monkeypatch):
    import onnxruntime

    monkeypatch.setattr(local, "_models", {})
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(
        RuntimeError, match="needs onnxruntime's CUDAExecutionProvider.*install onnxruntime-gpu"
    ):
        LocalEmbeddingProvider(device="cuda").embed(["Hello"])
    assert not local._models  # nothing half-loaded is kept


def _state_in_forked_child() -> tuple[int, tuple[int, int]]:
    sessions_inherited = len(local._models)
    return sessions_inherited, LocalEmbeddingProvider(intra_op_threads=1).embed(["Hello"]).vectors.shape


def test_forked_child_loads_its_own_session(provider):
    """onnxruntime's thread pool does not survive fork(); a child must not reuse the parent's."""
    provider.embed(["Hello"])
    assert local._models
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_state_in_forked_child) == (0, (1, 384))


# --- validate_result: every provider's output goes through it ---------------------------------


def result_of(vectors, token_counts=None) -> EmbeddingResult:
    vectors = np.asarray(vectors, dtype=np.float32)
    return EmbeddingResult(vectors, token_counts if token_counts is not None else [1] * len(vectors))


def test_validate_accepts_a_good_result():
    good = result_of(np.ones((2, 4)))
    assert validate_result(good, expected_count=2, dimensions=4) is good


@pytest.mark.parametrize(
    "result, message",
    [
        (result_of(np.ones((2, 4))), "expected 3 vectors, got 2"),
        (result_of(np.ones((3, 5))), "expected 4 dimensions, got 5"),
        (result_of(np.ones((3, 4)), token_counts=[1]), "expected 3 token counts, got 1"),
        (EmbeddingResult(np.ones(4, dtype=np.float32), [1, 1, 1]), "got ndarray of shape (4,)"),
        (EmbeddingResult([[1.0] * 4] * 3, [1, 1, 1]), "got list"),
    ],
)
def test_validate_rejects_wrong_shapes_permanently(result, message):
    with pytest.raises(EmbeddingError) as caught:
        validate_result(result, expected_count=3, dimensions=4)
    assert caught.value.kind == "permanent"
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "bad, word", [(np.nan, "1 NaN and 0 Inf"), (np.inf, "0 NaN and 1 Inf"), (-np.inf, "0 NaN and 1 Inf")]
)
def test_validate_rejects_non_finite_values_permanently(bad, word):
    vectors = np.ones((3, 4), dtype=np.float32)
    vectors[1, 2] = bad
    with pytest.raises(EmbeddingError) as caught:
        validate_result(result_of(vectors), expected_count=3, dimensions=4)
    assert caught.value.kind == "permanent"
    assert "1 of 3 vectors are not finite" in str(caught.value)
    assert word in str(caught.value)
    assert "rows 1" in str(caught.value)


def test_embedding_error_kinds():
    error = EmbeddingError("slow down", kind="rate_limited", retry_after=30)
    assert (error.kind, error.retry_after) == ("rate_limited", 30)
    assert EmbeddingError("timeout", kind="transient").retry_after is None
    with pytest.raises(ValueError):
        EmbeddingError("?", kind="sometimes")


def test_token_spans_cut_long_text_into_chunks_that_fit_the_model(provider):
    from documents.chunking import split_into_chunks

    text = " ".join(f"token{n} and some words" for n in range(400))
    spans = provider.token_spans(text)
    assert spans[0][0] == 0 and all(end > start for start, end in spans)
    chunks = split_into_chunks(text, max_tokens=256, overlap_tokens=32, token_spans=provider.token_spans)
    assert len(chunks) > 1
    assert all(count <= 256 for count in provider.count_tokens(chunks))
    assert chunks[0] == text[: len(chunks[0])] and chunks[-1].endswith("some words")
