# The two commands of the README. Both set up what is missing first (hack/setup.sh).
.PHONY: dev test test-fast e2e node setup bench bench-agents console

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

# A real cluster to poke at by hand (Ctrl-C stops it and restores the host); NODES=2 or 3 for
# several nodes.
NODES ?= 1
node: setup
	.venv/bin/python -m lingo_node.cluster --nodes $(NODES)

bench: setup bench-agents
	.venv/bin/python -m bench.simultaneous
	.venv/bin/python -m bench.session_create
	.venv/bin/python -m bench.worker_pool
	.venv/bin/python -m bench.worker_latency
	.venv/bin/python -m bench.languages
	.venv/bin/python -m bench.languages_e2e

# LiveKit Agents for bench.worker_pool's comparison only: its own environment, since it pins
# another LiveKit SDK than the project's.
bench-agents:
	@test -x .venv-agents/bin/python || $${PYTHON:-python3} -m venv .venv-agents
	.venv-agents/bin/pip install -q "livekit-agents==1.8.9"

# The web console's script: console/src bundled with livekit-client (from npm) into the facade's
# package (webhook/lingo_webhook/console/console.js, committed; a test checks it is current).
console: setup
	npm --prefix console run build
