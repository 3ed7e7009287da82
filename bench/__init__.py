"""Benchmarks for Omnidesk and the harness that runs a peer help desk beside it."""
