"""Benchmarks (not tests): run from the repo root, e.g. `make bench` or `python -m bench.session_create`."""
