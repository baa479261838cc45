"""A zero-cost embedder for benchmarks of the queue machinery alone: no model, no network.

Not for real use (its name says so). Each text gets one of 256 precomputed 384-d unit
vectors, picked by a CRC of the text, so equal texts get equal vectors and the cost per text
is a CRC and an index: what remains is the queue, the database and our Python.
"""

import zlib

import numpy as np

from documents.providers.base import EmbeddingResult

_rng = np.random.default_rng(1234)
_BASIS = _rng.standard_normal((256, 384)).astype(np.float32)
_BASIS /= np.linalg.norm(_BASIS, axis=1, keepdims=True)


class ZeroCostEmbedderForBenchmarks:
    model_id = "zero-cost-embedder-for-benchmarks@1"
    dimensions = 384
    max_input_tokens = 256
    max_batch_size = 64
    is_remote = False  # no shared rate limits or circuit breaker: nothing remote to guard

    def embed(self, texts: list[str]) -> EmbeddingResult:
        rows = [zlib.crc32(text.encode()) & 0xFF for text in texts]
        vectors = _BASIS[rows] if texts else np.zeros((0, 384), np.float32)
        return EmbeddingResult(vectors=vectors, token_counts=self.count_tokens(texts))

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(text.split()) for text in texts]
