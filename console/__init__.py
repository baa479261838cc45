"""The console layer, the top of Sidecar's layers: what people and monitors see and do — the
admin (documents, queue, dashboard, search page), the HTTP search API, health and metrics.

It calls the engine (`queue_admin`) and the domain (`documents`); nothing below imports it
(tests/operations/test_layers.py keeps it so)."""
