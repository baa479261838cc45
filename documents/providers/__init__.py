"""Embedding providers: the contract in :mod:`.base`, the default offline model in :mod:`.local`.

Importing this package loads no model and imports no onnxruntime; the local model loads on
its first ``embed`` call.
"""

from .base import ERROR_KINDS, EmbeddingError, EmbeddingProvider, EmbeddingResult, validate_result

__all__ = ["ERROR_KINDS", "EmbeddingError", "EmbeddingProvider", "EmbeddingResult", "validate_result"]
