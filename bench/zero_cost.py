"""A zero-cost embedder for benchmarks of the queue machinery alone: no model, no network.

Not for real use (its name says so). Each text's vector mixes three of 256 precomputed 384-d
vectors, picked by the bytes of a CRC of the text (weights 1, 0.6, 0.35), normalised: equal
texts get equal vectors, different texts (almost always) different ones, as a model's would
be. The vectors must be distinct: pgvector's HNSW index treats an exact duplicate of a vector
it holds differently from a new one (it adds the row to that element), so a few hundred
repeated vectors would make the index's insert cost, the largest share of a vector write,
unlike the real one. The cost per text is a CRC and three rows of arithmetic: what remains is
the queue, the database and our Python.
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
    fallback = None
    token_spans = None  # chunks split at words

    def embed(self, texts: list[str], may_retry=None) -> EmbeddingResult:
        if not texts:
            return EmbeddingResult(vectors=np.zeros((0, 384), np.float32), token_counts=[])
        crcs = np.array([zlib.crc32(text.encode()) for text in texts], dtype=np.uint32)
        vectors = _BASIS[crcs & 0xFF] + 0.6 * _BASIS[(crcs >> 8) & 0xFF] + 0.35 * _BASIS[(crcs >> 16) & 0xFF]
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return EmbeddingResult(vectors=vectors, token_counts=self.count_tokens(texts))

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(text.split()) for text in texts]
