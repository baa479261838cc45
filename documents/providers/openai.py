"""Any OpenAI-compatible ``POST /v1/embeddings``: OpenAI, Azure-style gateways, vLLM, Ollama, LiteLLM."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable

import numpy as np

from .base import EmbeddingError, EmbeddingResult, validate_result
from .http import HttpJsonClient, HttpOptions
from .responses import check_texts, vectors_from_rows
from .tokens import distribute_total, estimate_token_counts

logger = logging.getLogger("sidecar.providers")


class OpenAIEmbeddingProvider:
    """Embeddings from an OpenAI-compatible API.

    ``base_url`` usually ends in ``/v1``. ``send_dimensions`` asks the model to shorten its
    vectors to ``dimensions`` (OpenAI's text-embedding-3 models support it; many compatible
    servers reject the field). Shortened vectors differ from full ones, so ``model_id`` then
    says so: ``text-embedding-3-small@384d``.

    Vectors are asked for as base64 (each the float32 bytes, little-endian): a quarter of the
    JSON, and decoding is a copy where a list of floats is parsed number by number. A server
    that ignores the field answers lists of floats, which are read as such; one that refuses
    it (a 400 naming encoding_format) is asked again with floats, and this provider asks it
    for floats from then on.
    """

    # A service elsewhere: the workers share its quota and circuit breaker. No fallback of its
    # own (FallbackEmbeddingProvider pairs two), and no tokenizer here: chunks split at words.
    is_remote = True
    fallback = None
    token_spans = None

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        dimensions: int,
        *,
        max_batch_size: int = 128,
        max_input_tokens: int = 8191,
        send_dimensions: bool = False,
        http_options: HttpOptions | None = None,
    ):
        self.model = model
        self.dimensions = dimensions
        self.send_dimensions = send_dimensions
        self.model_id = f"{model}@{dimensions}d" if send_dimensions else model
        self.max_batch_size = max_batch_size
        self.max_input_tokens = max_input_tokens
        options = (http_options or HttpOptions()).fit_batch(max_batch_size, dimensions)
        self.http = HttpJsonClient(base_url, api_key, options)
        self.encoding_format = "base64"

    def __repr__(self) -> str:
        return f"OpenAIEmbeddingProvider({self.model_id!r}, {self.http!r})"

    def embed(self, texts: list[str], may_retry: Callable[[], bool] | None = None) -> EmbeddingResult:
        """POST the texts, put the vectors back in input order by ``index``, validate."""
        check_texts(texts, self.max_batch_size)
        if not texts:
            return EmbeddingResult(np.empty((0, self.dimensions), dtype=np.float32), [])
        payload: dict = {"model": self.model, "input": texts, "encoding_format": self.encoding_format}
        if self.send_dimensions:
            payload["dimensions"] = self.dimensions
        try:
            body = self.http.post_json("embeddings", payload, may_retry=may_retry)
        except EmbeddingError as exc:
            if not _refuses_base64(exc, payload):
                raise
            logger.warning(
                "%s refuses base64 vectors (%s); asking for floats from now on", self.http.base_url, exc
            )
            self.encoding_format = payload["encoding_format"] = "float"
            body = self.http.post_json("embeddings", payload, may_retry=may_retry)
        result = EmbeddingResult(_vectors_in_input_order(body, len(texts)), _token_counts(body, texts))
        return validate_result(result, len(texts), self.dimensions)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """An estimate (about 4 characters per token; see tokens.py), not the service's count."""
        return estimate_token_counts(texts)


def _vectors_in_input_order(body: object, expected: int) -> np.ndarray:
    """``data[*].embedding`` placed by ``data[*].index``: the API does not promise list order."""
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise EmbeddingError(_no_data_message(body), kind="permanent")
    data = body["data"]
    if len(data) > expected:
        raise EmbeddingError(f"expected {expected} vectors, got {len(data)}", kind="permanent")
    rows: list = [None] * expected
    came_from = [-1] * expected  # position in data of each index, -1 until seen
    for position, item in enumerate(data):
        if not isinstance(item, dict):
            raise EmbeddingError(
                f"data[{position}] is {type(item).__name__}, not an object", kind="permanent"
            )
        index = item.get("index")
        if type(index) is not int or not 0 <= index < expected:
            raise EmbeddingError(
                f"data[{position}].index is {index!r}; expected a whole number from 0 to {expected - 1}",
                kind="permanent",
            )
        if came_from[index] != -1:
            raise EmbeddingError(f"data[{position}].index {index} appears twice", kind="permanent")
        rows[index], came_from[index] = item.get("embedding"), position
    if len(data) < expected:
        missing = [str(i) for i, seen in enumerate(came_from) if seen == -1]
        shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
        raise EmbeddingError(
            f"expected {expected} vectors, got {len(data)} (missing index {shown})", kind="permanent"
        )
    if any(isinstance(row, str) for row in rows):
        return _decode_base64_rows(rows, came_from)
    return vectors_from_rows(rows, lambda i: f"data[{came_from[i]}].embedding")


def _refuses_base64(error: EmbeddingError, payload: dict) -> bool:
    """A 400 that names encoding_format, to a request that asked for base64."""
    text = str(error)
    return payload.get("encoding_format") == "base64" and "HTTP 400" in text and "encoding_format" in text


def _decode_base64_rows(rows: list, came_from: list[int]) -> np.ndarray:
    """Rows that are base64 strings of little-endian float32 bytes (a list of floats among them
    is taken as it is); lengths and NaN are left to validate_result, as for floats."""
    decoded = []
    for i, row in enumerate(rows):
        where = f"data[{came_from[i]}].embedding"
        if isinstance(row, list):
            decoded.append(vectors_from_rows([row], lambda _, where=where: where)[0])
            continue
        if not isinstance(row, str):
            raise EmbeddingError(f"{where} is neither base64 text nor a list of numbers", kind="permanent")
        try:
            raw = base64.b64decode(row, validate=True)
        except (binascii.Error, ValueError):
            raise EmbeddingError(f"{where} is not valid base64", kind="permanent") from None
        if len(raw) % 4:
            raise EmbeddingError(
                f"{where} holds {len(raw)} bytes, not whole float32 numbers", kind="permanent"
            )
        decoded.append(np.frombuffer(raw, dtype="<f4"))
    lengths = {len(vector) for vector in decoded}
    if len(lengths) > 1:
        raise EmbeddingError(
            f"vectors have different lengths ({', '.join(str(n) for n in sorted(lengths))})", kind="permanent"
        )
    return np.ascontiguousarray(np.stack(decoded), dtype=np.float32)


def _no_data_message(body: object) -> str:
    if isinstance(body, dict):
        # Some gateways answer 200 with an error object instead of an error status.
        error = body.get("error")
        if error:
            detail = error.get("message", error) if isinstance(error, dict) else error
            return f"response has no 'data' list but an error: {str(detail)[:200]}"
        keys = ", ".join(sorted(map(str, body))[:10]) or "none"
        return f"response has no 'data' list (keys: {keys})"
    return f"expected a JSON object with a 'data' list, got {type(body).__name__}"


def _token_counts(body: dict, texts: list[str]) -> list[int]:
    """Per-text tokens: ``usage.prompt_tokens`` shared out by estimate, or the estimate alone.

    The API reports only the batch total; the split is proportional to each text's estimated
    length, so per-text numbers are approximate but add up to what the service counted.
    """
    estimates = estimate_token_counts(texts)
    usage = body.get("usage")
    total = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if type(total) is not int or total < 0:
        return estimates
    return distribute_total(total, estimates)
