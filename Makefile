# The two commands of the README. Both set up what is missing first (hack/setup.sh).
.PHONY: dev test setup bench

setup:
	@bash hack/setup.sh

dev: setup
	.venv/bin/python -m lingo_loopback.stack

test: setup
	.venv/bin/pytest

bench: setup
	.venv/bin/python -m bench.session_create
	.venv/bin/python -m bench.worker_latency
