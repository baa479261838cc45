"""Chaos and fault suites: kill -9 chaos, a provider fault storm, graceful shutdown.

Each suite is a plain function over a plan (sizes, rates, seed) that returns its figures; the
short versions run inside `make test` (tests/robustness/test_chaos_*.py), the long ones with `make chaos`
(`python -m tests.chaos`), which writes a report under tests/chaos/results/.
"""
