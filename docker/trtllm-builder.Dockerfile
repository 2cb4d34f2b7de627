# Engine build Job image of runtime tensorrt-llm (never built in CI; no GPU is needed to build it,
# one is needed to run it). Build from the repository root:
#   docker build -f docker/trtllm-builder.Dockerfile -t ghcr.io/conch-dev/trtllm-builder:0.1.0 .
#
# Based on the very image that serves the engines: an engine only loads in the TensorRT-LLM
# (1.2.1) and TensorRT (10.14) it was built with.
#
# TRITON_IMAGE is NVIDIA's image on purpose, even where `make images` builds the other images from a
# Debian base: TensorRT-LLM 1.2.1 with its CUDA torch only exists there and on pypi.nvidia.com
# (PyPI's tensorrt-llm 1.2.1 is a 10 kB stub that downloads the wheel from NVIDIA at install time),
# and the example scripts come from GitHub. Neither is reachable from the machine the project is
# tested on, so this image is built where they are (`make images` skips it).
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3

# The example scripts are not in the wheel: take them from the v1.2.1 tag.
FROM ${TRITON_IMAGE} AS examples
ARG TRTLLM_TAG=v1.2.1
RUN git clone --depth 1 --branch ${TRTLLM_TAG} --filter=blob:none --sparse \
        https://github.com/NVIDIA/TensorRT-LLM.git /src/TensorRT-LLM \
    && cd /src/TensorRT-LLM \
    && git sparse-checkout set examples/quantization examples/models/core/llama examples/models/core/qwen \
        examples/constraints.txt

FROM ${TRITON_IMAGE}
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_CACHE_DIR=1
# Same layout as conch_engines.tensorrt_llm.pins.EXAMPLES_DIR.
COPY --from=examples /src/TensorRT-LLM/examples/quantization /opt/trtllm-examples/quantization
COPY --from=examples /src/TensorRT-LLM/examples/models/core/llama /opt/trtllm-examples/models/core/llama
COPY --from=examples /src/TensorRT-LLM/examples/models/core/qwen /opt/trtllm-examples/models/core/qwen
COPY --from=examples /src/TensorRT-LLM/examples/constraints.txt /opt/trtllm-examples/constraints.txt
# The examples' requirements (datasets for calibration, ModelOpt for quantize.py), constrained to
# what tensorrt_llm==1.2.1 pins so pip cannot swap the image's torch/TensorRT-LLM.
RUN pip install -c /opt/trtllm-examples/constraints.txt \
        -r /opt/trtllm-examples/quantization/requirements.txt \
        -r /opt/trtllm-examples/models/core/llama/requirements.txt \
        -r /opt/trtllm-examples/models/core/qwen/requirements.txt \
    && python3 -c "import tensorrt_llm; assert tensorrt_llm.__version__ == '1.2.1', tensorrt_llm.__version__"

# Conch's packages: conch_engines (the builder) and conch_api (the Model types it reads). Only
# what they import is installed; the gateway/operator dependencies stay out of this image.
COPY engines/conch_engines /opt/conch/conch_engines
COPY crds/conch_api /opt/conch/conch_api
RUN pip install "pydantic>=2.7" "pyyaml>=6.0" "huggingface_hub>=0.24"
ENV PYTHONPATH=/opt/conch

# Non-root, as the operator runs the Job (uid/gid 1000, which NVIDIA's Triton images already give
# their own `triton-server` user: no new user). The Job writes only to the engine-cache volume
# (CACHE_MOUNT=/cache; the Hugging Face cache too, as the operator's Job sets it) and /tmp.
RUN mkdir -p /cache && chown 1000:1000 /cache
USER 1000:1000
ENV HOME=/tmp HF_HOME=/cache/.huggingface
WORKDIR /tmp
ENTRYPOINT ["python3", "-m", "conch_engines.tensorrt_llm.builder"]
