# The Conch operator: `python -m conch_operator` (kopf). Arguments (`-A`, `-n NS`, `--peering`,
# `--liveness`) come from the chart.
#   docker build -f docker/operator.Dockerfile -t ghcr.io/conch-dev/conch-operator:0.1.0 .

FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/conch
COPY docker/requirements/operator.txt /tmp/requirements.txt
RUN /opt/conch/bin/pip install -r /tmp/requirements.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY engines engines
COPY crds crds
COPY operator operator
COPY cluster cluster
RUN /opt/conch/bin/pip install --no-deps . \
 && /opt/conch/bin/python -m compileall -q /opt/conch/lib

FROM python:3.11.13-slim-bookworm
RUN groupadd --gid 10001 conch \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin conch
COPY --from=build /opt/conch /opt/conch
ENV PATH=/opt/conch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
EXPOSE 8080 8090
ENTRYPOINT ["python", "-m", "conch_operator"]
