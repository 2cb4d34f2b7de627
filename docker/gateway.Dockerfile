# The Conch gateway: `python -m conch_gateway` with the Kubernetes model source.
#   docker build -f docker/gateway.Dockerfile -t ghcr.io/conch-dev/conch-gateway:0.1.0 .
# (from the repository root: the build copies pyproject.toml and the package folders)
#
# BASE_IMAGE: a Debian bookworm image with Python 3.11 and its venv module. `make images` passes one
# bootstrapped from Debian's packages (no registry needed); VERSION/REVISION label the image.
ARG BASE_IMAGE=python:3.11.13-slim-bookworm

# The dependencies alone: their layer is reused until docker/requirements/gateway.txt changes.
FROM ${BASE_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/conch
COPY docker/requirements/gateway.txt /tmp/requirements.txt
RUN /opt/conch/bin/pip install -r /tmp/requirements.txt \
 && /opt/conch/bin/python -m compileall -q /opt/conch/lib

# The project itself as a wheel, without its dependencies: those are the image's own list above,
# not the whole development stack (Triton, llama.cpp, the bundled model).
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
LABEL org.opencontainers.image.title="conch-gateway" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
RUN groupadd --gid 10001 conch \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin conch
COPY --from=deps /opt/conch /opt/conch
COPY --from=project /wheels /tmp/wheels
RUN /opt/conch/bin/pip install --no-cache-dir --no-index --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels
ENV PATH=/opt/conch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    CONCH_HOST=0.0.0.0 \
    CONCH_MODEL_SOURCE=kubernetes \
    PORT=8000
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["python", "-m", "conch_gateway"]
