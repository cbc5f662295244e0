# Translation worker, GPU profile: CUDA 12 + cuDNN 9 for CTranslate2 (faster-whisper, NLLB).
# Models are not baked in: the init step fetches them into /models (values: worker.gpu.models), or
# a PVC holds them already (worker.gpu.modelsPvc). BASE_IMAGE: your registry's copy of the CUDA image.
ARG BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv apertium apertium-eng-spa espeak-ng \
 && rm -rf /var/lib/apt/lists/*
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
RUN pip install '.[worker]' && rm -rf /src
USER 10001
EXPOSE 8080
CMD ["lingo-worker"]
