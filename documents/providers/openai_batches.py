"""OpenAI's Batch API for embeddings: one JSONL file of requests in, one file of answers out,
within the provider's completion window, at half the price of the same requests sent one by one.

https://platform.openai.com/docs/guides/batch — upload the file (``POST /files``, purpose
``batch``), create the batch (``POST /batches``), poll it (``GET /batches/{id}``), download its
output and error files (``GET /files/{id}/content``). Each request line carries a ``custom_id``
that its answer line repeats; answers come in any order. This module speaks the protocol
(through the one HTTP module) and reads answers into the provider's own results and errors;
which documents go into a batch and what happens to them is the queue's
(queue_admin/provider_batches.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .base import EmbeddingError, EmbeddingResult, validate_result
from .http import MiB
from .openai import OpenAIEmbeddingProvider, _token_counts, _vectors_in_input_order

# The provider's limits for one batch (OpenAI: 50,000 requests, 50,000 embedding inputs across
# them, a 200 MB input file); the file is kept well under its cap.
MAX_REQUESTS = 50_000
MAX_INPUTS = 50_000
MAX_FILE_BYTES = 190 * MiB
COMPLETION_WINDOW = "24h"
COMPLETION_WINDOW_SECONDS = 24 * 3600
# The Batch API's price against the same requests sent online (OpenAI: half).
PRICE_FACTOR = 0.5

# The provider's words for a batch that will change no more.
FINISHED = frozenset({"completed", "failed", "expired", "cancelled"})
# A line's error codes that say it was never run (the batch ended first): not the text's fault.
NOT_RUN_CODES = frozenset({"batch_expired", "batch_cancelled"})


class NotRun(Exception):
    """An answer line saying its request never ran (the batch expired or was cancelled)."""


@dataclass(frozen=True)
class Request:
    custom_id: str
    texts: list[str]


class BatchApi:
    """The Batch API of the service an :class:`OpenAIEmbeddingProvider` sends to."""

    def __init__(self, provider: OpenAIEmbeddingProvider):
        self.provider = provider
        self.http = provider.http

    def request_line(self, request: Request) -> bytes:
        """One JSONL line: the same body the provider POSTs to /embeddings online."""
        body: dict = {"model": self.provider.model, "input": request.texts, "encoding_format": "base64"}
        if self.provider.send_dimensions:
            body["dimensions"] = self.provider.dimensions
        line = {"custom_id": request.custom_id, "method": "POST", "url": "/v1/embeddings", "body": body}
        return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    def upload(self, jsonl: bytes, name: str) -> str:
        """Upload a requests file; returns its file id."""
        answer = self.http.post_file("files", f"{name}.jsonl", jsonl, {"purpose": "batch"})
        return _string_field(answer, "id", "the file upload")

    def create(self, input_file_id: str, metadata: dict[str, str]) -> dict:
        """Create a batch over an uploaded file; returns the batch object."""
        answer = self.http.post_json(
            "batches",
            {
                "input_file_id": input_file_id,
                "endpoint": "/v1/embeddings",
                "completion_window": COMPLETION_WINDOW,
                "metadata": metadata,
            },
        )
        _string_field(answer, "id", "creating a batch")
        return answer

    def get(self, batch_id: str) -> dict:
        answer = self.http.get_json(f"batches/{batch_id}")
        _string_field(answer, "status", f"batch {batch_id}")
        return answer

    def find(self, key: str, value: str) -> dict | None:
        """The most recent batch (of the last 100) whose metadata has ``key`` = ``value``: a
        batch created by a process that died before it could record the batch's id."""
        answer = self.http.get_json("batches?limit=100")
        data = answer.get("data") if isinstance(answer, dict) else None
        for batch in data if isinstance(data, list) else []:
            metadata = batch.get("metadata") if isinstance(batch, dict) else None
            if isinstance(metadata, dict) and metadata.get(key) == value:
                return batch
        return None

    def cancel(self, batch_id: str) -> dict:
        return self.http.post_json(f"batches/{batch_id}/cancel", {})

    def download(self, file_id: str, expected_inputs: int) -> bytes:
        """A result file's bytes, capped by what that many vectors can take as JSON text."""
        limit = max(64 * MiB, expected_inputs * self.provider.dimensions * 48)
        return self.http.get_bytes(f"files/{file_id}/content", limit)

    def read_answers(
        self, content: bytes, expected: dict[str, int]
    ) -> dict[str, EmbeddingResult | EmbeddingError | NotRun]:
        """Each answer line of an output or error file, by ``custom_id``: the vectors, checked
        as an online answer is; the error, with the kind an online answer of that status has;
        or NotRun. ``expected`` is each request's number of texts; lines for other ids are
        ignored (they are not ours)."""
        answers: dict[str, EmbeddingResult | EmbeddingError | NotRun] = {}
        for number, raw in enumerate(content.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                # A broken line names no request: the requests it answered come back unanswered.
                continue
            custom_id = line.get("custom_id") if isinstance(line, dict) else None
            if custom_id not in expected:
                continue
            answers[custom_id] = self._read_answer(line, expected[custom_id], number)
        return answers

    def _read_answer(self, line: dict, texts: int, number: int):
        where = f"batch answer line {number}"
        error, response = line.get("error"), line.get("response")
        if isinstance(error, dict) and error.get("code") in NOT_RUN_CODES:
            return NotRun(error.get("code"))
        status = response.get("status_code") if isinstance(response, dict) else None
        if status == 200:
            body = response.get("body")
            try:
                vectors = _vectors_in_input_order(body, texts)
                # The texts are not at hand here: the usage total is shared out evenly.
                result = EmbeddingResult(vectors, _token_counts(body, [""] * texts))
                return validate_result(result, texts, self.provider.dimensions)
            except EmbeddingError as exc:
                return EmbeddingError(f"{where}: {exc}", kind=exc.kind)
        detail = _error_text(error, response)
        if status == 429:
            return EmbeddingError(f"{where}: rate limited: {detail}", kind="rate_limited")
        if isinstance(status, int) and 400 <= status < 500 and status != 408:
            return EmbeddingError(f"{where}: HTTP {status}: {detail}", kind="permanent")
        # A 5xx, a timeout, or an error with no response: the same text may well work again.
        shown = f"HTTP {status}: " if status else ""
        return EmbeddingError(f"{where}: {shown}{detail}", kind="transient")


def batch_errors(batch: dict) -> str:
    """A failed batch's reasons (validation of the input file), in one line."""
    errors = batch.get("errors")
    data = errors.get("data") if isinstance(errors, dict) else None
    messages = [
        f"{item.get('code', 'error')}: {item.get('message', '')}".strip()
        for item in (data if isinstance(data, list) else [])
        if isinstance(item, dict)
    ]
    return "; ".join(messages)[:2000] or "the provider gave no reason"


def _error_text(error, response) -> str:
    if isinstance(error, dict) and (error.get("message") or error.get("code")):
        return str(error.get("message") or error.get("code"))[:500]
    body = response.get("body") if isinstance(response, dict) else None
    inner = body.get("error") if isinstance(body, dict) else None
    if isinstance(inner, dict) and inner.get("message"):
        return str(inner["message"])[:500]
    return "no reason given"


def _string_field(answer, name: str, what: str) -> str:
    value = answer.get(name) if isinstance(answer, dict) else None
    if not isinstance(value, str) or not value:
        raise EmbeddingError(f"{what}: the answer has no {name!r}: {str(answer)[:200]}", kind="permanent")
    return value
