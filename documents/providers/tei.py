"""Hugging Face text-embeddings-inference (TEI): ``POST /embed``.

TEI answers a JSON list of vectors in input order. Its own error statuses map onto ours
through http.py: 413 (batch larger than ``--max-client-batch-size``), 422 (input it cannot
tokenize) and 424 (the model failed on this input) are permanent; 429 ("model is
overloaded", ``--max-concurrent-requests``) is rate_limited, usually without Retry-After.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .base import EmbeddingError, EmbeddingResult, validate_result
from .http import HttpJsonClient, HttpOptions
from .responses import check_texts, vectors_from_rows
from .tokens import estimate_token_counts


class TEIEmbeddingProvider:
    """Embeddings from a TEI server, L2-normalised by the server.

    TEI serves one model, chosen when the server starts; ``model`` is that model's name
    (e.g. ``BAAI/bge-small-en-v1.5``) and becomes ``model_id``. ``max_batch_size`` defaults
    to TEI's default ``--max-client-batch-size`` (32); ``max_input_tokens`` to 512, the
    limit of most BERT-sized models. TEI cuts longer inputs (``truncate``), so the token
    counts of a result are the estimate capped at ``max_input_tokens``.
    """

    # A service elsewhere: the workers share its quota and circuit breaker. No fallback of its
    # own (FallbackEmbeddingProvider pairs two), and no tokenizer here: chunks split at words.
    is_remote = True
    fallback = None
    token_spans = None

    def __init__(
        self,
        base_url: str,
        model: str,
        dimensions: int,
        *,
        api_key: str | None = None,
        max_batch_size: int = 32,
        max_input_tokens: int = 512,
        http_options: HttpOptions | None = None,
    ):
        self.model = model
        self.model_id = model
        self.dimensions = dimensions
        self.max_batch_size = max_batch_size
        self.max_input_tokens = max_input_tokens
        options = (http_options or HttpOptions()).fit_batch(max_batch_size, dimensions)
        self.http = HttpJsonClient(base_url, api_key, options)

    def __repr__(self) -> str:
        return f"TEIEmbeddingProvider({self.model_id!r}, {self.http!r})"

    def embed(self, texts: list[str], may_retry: Callable[[], bool] | None = None) -> EmbeddingResult:
        check_texts(texts, self.max_batch_size)
        if not texts:
            return EmbeddingResult(np.empty((0, self.dimensions), dtype=np.float32), [])
        body = self.http.post_json(
            "embed", {"inputs": texts, "truncate": True, "normalize": True}, may_retry=may_retry
        )
        if not isinstance(body, list):
            kind = type(body).__name__
            detail = f" (keys: {', '.join(sorted(map(str, body))[:10])})" if isinstance(body, dict) else ""
            raise EmbeddingError(f"expected a JSON list of vectors, got {kind}{detail}", kind="permanent")
        vectors = vectors_from_rows(body, lambda i: f"vector {i}")
        read = [min(count, self.max_input_tokens) for count in estimate_token_counts(texts)]
        result = EmbeddingResult(vectors, read)
        return validate_result(result, len(texts), self.dimensions)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """An estimate (about 4 characters per token; see tokens.py), not capped: a count above
        ``max_input_tokens`` tells the chunker that TEI would cut the text."""
        return estimate_token_counts(texts)
