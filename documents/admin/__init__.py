"""The documents' admin, one module per page: documents (with their chunks), the sidecar's
embedding rows (read-only, never the whole vector) and API tokens."""

from documents.admin import documents, embeddings, tokens  # noqa: F401 - registers them
