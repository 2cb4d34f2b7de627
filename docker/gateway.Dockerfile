# The Conch gateway: `python -m conch_gateway` with the Kubernetes model source.
#   docker build -f docker/gateway.Dockerfile -t ghcr.io/conch-dev/conch-gateway:0.1.0 .
# (from the repository root: the build copies pyproject.toml and the package folders)

FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/conch
COPY docker/requirements/gateway.txt /tmp/requirements.txt
RUN /opt/conch/bin/pip install -r /tmp/requirements.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY engines engines
COPY crds crds
COPY operator operator
COPY cluster cluster
# The project itself without its dependencies: those are the image's own list above, not the
# whole development stack (Triton, llama.cpp, the bundled model).
RUN /opt/conch/bin/pip install --no-deps . \
 && /opt/conch/bin/python -m compileall -q /opt/conch/lib

FROM python:3.11.13-slim-bookworm
RUN groupadd --gid 10001 conch \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin conch
COPY --from=build /opt/conch /opt/conch
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
