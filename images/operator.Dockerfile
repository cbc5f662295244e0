# The operator and the REST facade (one image, two commands: lingo-operator, lingo-webhook).
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api api
COPY operator operator
COPY webhook webhook
COPY worker worker
COPY hack/loopback hack/loopback
RUN pip install . && rm -rf /src
USER 10001
ENTRYPOINT []
CMD ["lingo-operator"]
