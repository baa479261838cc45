"""A fake embedder for tests about the queue, not the model (its name says so).

Deterministic vectors from a hash of the text, unit length, so equal texts get equal vectors:
the same vectors as the fake embedding service gives (tests/fault_server.py: fake_vector). It
counts every text it is sent so tests can prove nothing is embedded twice.
"""

import threading

import numpy as np

from documents.providers.base import EmbeddingError, EmbeddingResult
from tests.fault_server import fake_vector


class FakeEmbedderForQueueTests:
    model_id = "fake-embedder-for-queue-tests@1"
    dimensions = 384
    max_input_tokens = 256
    max_batch_size = 16
    is_remote = False  # no shared limits or breaker unless a test asks for them
    fallback = None
    token_spans = None  # chunks split at words

    def __init__(self, fail_on: dict[str, EmbeddingError] | None = None):
        self.fail_on = fail_on or {}  # substring of a text → the error its batch raises
        self.texts_sent: list[str] = []
        self.calls = 0
        self._lock = threading.Lock()

    def embed(self, texts: list[str], may_retry=None) -> EmbeddingResult:
        with self._lock:
            self.calls += 1
            for marker, error in self.fail_on.items():
                if any(marker in text for text in texts):
                    raise error
            self.texts_sent.extend(texts)
        vectors = (
            np.stack([fake_vector(text, 384) for text in texts]) if texts else np.zeros((0, 384), np.float32)
        )
        return EmbeddingResult(vectors=vectors, token_counts=[len(text.split()) for text in texts])

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(text.split()) for text in texts]
