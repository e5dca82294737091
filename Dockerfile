# syntax=docker/dockerfile:1
# One image for FlowForge's Python services (worker, bridges); the `sim` target adds GStreamer
# for the RTSP simulator. docker-compose.yml builds both; each service picks its command.
#   docker build -t flowforge:local .                 (target runtime, the last stage)
#   docker build -t flowforge-sim:local --target sim .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: compilers only here, for any dependency without a wheel ----------------------------
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md ./
COPY flowforge ./flowforge
COPY streams ./streams
COPY bridges ./bridges
COPY infra ./infra
# Editable install at /app, the path the runtime stages use too: FlowForge reads infra/ (schema,
# configs) next to its packages.
RUN /opt/venv/bin/pip install -e .

# --- base: the virtualenv and the source, a non-root user, no build tools ----------------------
FROM ${PYTHON_IMAGE} AS base
RUN groupadd --system --gid 10001 flowforge \
    && useradd --system --uid 10001 --gid flowforge --home-dir /var/lib/flowforge \
        --shell /usr/sbin/nologin flowforge \
    && mkdir -p /var/lib/flowforge /data/incoming \
    && chown flowforge:flowforge /var/lib/flowforge /data/incoming
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FLOWFORGE_HOME=/var/lib/flowforge
WORKDIR /app

# --- sim: the RTSP simulator (GStreamer's RTSP server under Debian's python3 + python3-gi) -------
FROM base AS sim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-gi gir1.2-gst-rtsp-server-1.0 \
        gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly \
        gstreamer1.0-libav \
    && rm -rf /var/lib/apt/lists/*
ENV FLOWFORGE_SIM_PYTHON=/usr/bin/python3
USER flowforge
EXPOSE 8554 9997
CMD ["flowforge", "sim", "rtsp"]

# --- runtime: worker and bridges (the default target) ------------------------------------------
FROM base AS runtime
USER flowforge
EXPOSE 6066 6067 6068 6069
CMD ["flowforge", "worker"]
