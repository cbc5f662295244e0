# The two commands of the README. Both set up what is missing first (hack/setup.sh).
.PHONY: dev test test-fast e2e node setup bench

setup:
	@bash hack/setup.sh

dev: setup
	.venv/bin/python -m lingo_loopback.stack

# Everything: the loopback suite, then the real node (images, helm install, real containers).
test: setup
	.venv/bin/pytest

# The fast path: the loopback suite only.
test-fast: setup
	.venv/bin/pytest -m "not node"

# The real-node tests only.
e2e: setup
	.venv/bin/pytest -m node

# A real node to poke at by hand (Ctrl-C stops it and restores the host).
node: setup
	.venv/bin/python -m lingo_node.cluster

bench: setup
	.venv/bin/python -m bench.session_create
	.venv/bin/python -m bench.worker_latency
	.venv/bin/python -m bench.languages
	.venv/bin/python -m bench.languages_e2e
