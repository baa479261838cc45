"""A primary provider with a second one behind it, for the same model served elsewhere."""

from __future__ import annotations

import logging
from collections.abc import Callable

from .base import EmbeddingError, EmbeddingProvider, EmbeddingResult

logger = logging.getLogger(__name__)


class FallbackEmbeddingProvider:
    """Try ``primary``; if it fails in a way that trying later could fix, try ``fallback``.

    Both must produce the same vectors (the factory checks ``model_id`` and dimensions before
    building this). Permanent errors are raised at once: bad input is bad on any server, and a
    rejected key or wrong model name is a configuration mistake a person must see, not one a
    fallback should hide. If the fallback fails too, the *primary's* error is raised (with the
    fallback's appended), so the queue retries or waits exactly as it would without a
    fallback.
    """

    # Two services elsewhere; the chunker splits at words, as for each of them.
    is_remote = True
    token_spans = None

    def __init__(self, primary: EmbeddingProvider, fallback: EmbeddingProvider):
        self.primary = primary
        self.fallback = fallback
        self.model_id = primary.model_id
        self.dimensions = primary.dimensions
        self.max_input_tokens = min(primary.max_input_tokens, fallback.max_input_tokens)
        self.max_batch_size = min(primary.max_batch_size, fallback.max_batch_size)

    def __repr__(self) -> str:
        return f"FallbackEmbeddingProvider({self.primary!r}, {self.fallback!r})"

    def embed(self, texts: list[str], may_retry: Callable[[], bool] | None = None) -> EmbeddingResult:
        try:
            return self.primary.embed(texts, may_retry)
        except EmbeddingError as primary_error:
            if primary_error.kind == "permanent":
                raise
            logger.warning("primary embedding provider failed (%s); trying the fallback", primary_error)
            try:
                return self.fallback.embed(texts, may_retry)
            except EmbeddingError as fallback_error:
                raise EmbeddingError(
                    f"{primary_error}; the fallback failed too: {fallback_error}",
                    kind=primary_error.kind,
                    retry_after=primary_error.retry_after,
                ) from fallback_error

    def count_tokens(self, texts: list[str]) -> list[int]:
        return self.primary.count_tokens(texts)
