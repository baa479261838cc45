"""The contract every embedding provider keeps: what it returns, how it fails, how it is checked.

Providers (the local ONNX model, HTTP APIs) differ in how they compute vectors; the queue only
sees this module. Their errors carry a *kind* so the worker can decide without knowing the
provider: transient → retry with backoff, rate_limited → wait for ``retry_after``, permanent →
dead letter at once (DESIGN.md, "Fail precisely").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

ErrorKind = Literal["transient", "rate_limited", "permanent"]
ERROR_KINDS: frozenset[str] = frozenset({"transient", "rate_limited", "permanent"})


class EmbeddingError(Exception):
    """A provider could not embed a batch.

    ``kind`` is one of :data:`ERROR_KINDS`; ``retry_after`` is the number of seconds the
    provider asked us to wait (a 429's Retry-After), or None when it said nothing.
    """

    def __init__(self, message: str, *, kind: ErrorKind, retry_after: float | None = None):
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown embedding error kind {kind!r}; use one of {sorted(ERROR_KINDS)}")
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"EmbeddingError({str(self)!r}, kind={self.kind!r}, retry_after={self.retry_after!r})"


@dataclass(frozen=True, eq=False)
class EmbeddingResult:
    """One batch's vectors, in the order of the texts that were sent.

    ``vectors`` is a C-contiguous float32 numpy array of shape ``(len(texts), dimensions)``:
    one allocation instead of n Python lists of floats, and pgvector's Django field takes a
    row of it directly. ``token_counts[i]`` is the number of tokens the model actually read
    for text i (after any truncation), for rate limits and cost estimates.

    ``eq=False`` because numpy arrays have no single truth value for ``==``.
    """

    vectors: np.ndarray
    token_counts: list[int]


@runtime_checkable
class EmbeddingProvider(Protocol):
    """What the queue needs from a model.

    ``model_id`` names the model *and the build of its weights* (it is stored on every
    sidecar row, so two builds whose vectors differ must not share one).
    ``max_batch_size`` is how many texts one ``embed`` call may carry.
    ``is_remote``: served by another process or machine, so the workers share its rate limits
    and circuit breaker through the database; False for a model that runs in the worker.
    ``fallback``: the same model served elsewhere, sent to while this one's breaker is open.
    ``token_spans``: the model's tokenizer as ``(start, end)`` character spans, so chunks are
    cut at token boundaries; None splits at words.
    ``embed``'s ``may_retry`` is asked before each retry of a failed request (a retry is a
    request the provider counts); when it answers False the last error is raised as it is.
    """

    model_id: str
    dimensions: int
    max_input_tokens: int
    max_batch_size: int
    is_remote: bool
    fallback: EmbeddingProvider | None
    token_spans: Callable[[str], np.ndarray] | None

    def embed(self, texts: list[str], may_retry: Callable[[], bool] | None = None) -> EmbeddingResult: ...

    def count_tokens(self, texts: list[str]) -> list[int]: ...


def validate_result(result: EmbeddingResult, expected_count: int, dimensions: int) -> EmbeddingResult:
    """Check a provider's output before anything is stored; return it unchanged.

    A wrong count, a wrong dimension or a NaN/Inf is never fixed by sending the same texts
    again, so each raises a *permanent* :class:`EmbeddingError` whose message says what came
    back. Every provider's ``embed`` passes its result through here.
    """
    vectors = result.vectors
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2:
        shape = getattr(vectors, "shape", None)
        raise EmbeddingError(
            f"expected a 2-d array of {expected_count} vectors, got {type(vectors).__name__}"
            + (f" of shape {shape}" if shape is not None else ""),
            kind="permanent",
        )
    count, dims = vectors.shape
    if count != expected_count:
        raise EmbeddingError(f"expected {expected_count} vectors, got {count}", kind="permanent")
    if dims != dimensions:
        raise EmbeddingError(
            f"expected {dimensions} dimensions, got {dims} (shape {vectors.shape})", kind="permanent"
        )
    if len(result.token_counts) != expected_count:
        raise EmbeddingError(
            f"expected {expected_count} token counts, got {len(result.token_counts)}", kind="permanent"
        )
    _check_finite(vectors)
    return result


def _check_finite(vectors: np.ndarray) -> None:
    """Raise a permanent error naming which rows hold NaN or Inf, and how many of each."""
    bad_rows = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if bad_rows.size == 0:
        return
    nan_count = int(np.isnan(vectors).sum())
    inf_count = int(np.isinf(vectors).sum())
    shown = ", ".join(str(i) for i in bad_rows[:10]) + (", ..." if bad_rows.size > 10 else "")
    raise EmbeddingError(
        f"{bad_rows.size} of {len(vectors)} vectors are not finite "
        f"({nan_count} NaN and {inf_count} Inf values; rows {shown})",
        kind="permanent",
    )
