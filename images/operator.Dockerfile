# The operator and the REST facade (one image, two commands: lingo-operator, lingo-webhook).
# BASE_IMAGE: any Debian bookworm with python3 (>= 3.11) and python3-venv; hack/node builds one
# with debootstrap. PIP_INSTALL_ARGS: e.g. "--no-index --find-links=/wheels" for an offline build.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
ARG PIP_INSTALL_ARGS=""
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api api
COPY operator operator
COPY webhook webhook
COPY worker worker
COPY hack/loopback hack/loopback
COPY hack/node hack/node
RUN pip install $PIP_INSTALL_ARGS . && rm -rf /src
WORKDIR /
USER 10001
ENTRYPOINT []
CMD ["lingo-operator"]
