"""The documents' admin, one module per page: documents (with their chunks, the re-embed
action and the backfill page), the sidecar's embedding rows (read-only, never the whole
vector), API tokens, and the site-wide semantic search page (listed in PAGE_MODULES)."""

from documents.admin import documents, embeddings, tokens  # noqa: F401 - registers them
