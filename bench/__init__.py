"""Benchmarks (`make bench`, `python -m bench`): they measure and print; they are not tests.

Each run starts its own embedded PostgreSQL (`.data/bench-postgres`), empties the document,
sidecar and queue tables between measurements, and writes JSON and Markdown reports under
`bench/results/`. See `python -m bench --help`.
"""
