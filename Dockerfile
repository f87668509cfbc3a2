# MirrorNeuron image: `docker build -t mirror-neuron .`
#
# Stage 1 builds the wheel (migrations and alembic.ini inside) and installs it with its
# dependencies into a virtual environment; stage 2 is the slim runtime with that environment, tini
# as PID 1 (it reaps executor process trees and passes SIGTERM on, so a stopping node hands its jobs
# over), a non-root user and a HEALTHCHECK. Nothing is downloaded when a container starts.
#
#   docker run --rm mirror-neuron --version
#   docker run --rm -e MIRROR_NEURON_DATABASE_URL=postgresql://... mirror-neuron migrate
#   docker run -d -p 127.0.0.1:4000:4000 -e MIRROR_NEURON_API_TOKEN=... -e MIRROR_NEURON_DATABASE_URL=... mirror-neuron
#   docker run -d -e MIRROR_NEURON_API_ENABLED=0 -e MIRROR_NEURON_DATABASE_URL=... mirror-neuron worker
#
# PYTHON_IMAGE may name any Debian-based image with python3 (>= 3.11) and its venv module.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md alembic.ini ./
COPY migrations/ migrations/
COPY app/ app/
RUN python3 -m venv /opt/mirror-neuron \
 && /opt/mirror-neuron/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/mirror-neuron/bin/pip install /wheels/mirror_neuron-*.whl \
 && /opt/mirror-neuron/bin/mirror-neuron --version

FROM ${PYTHON_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --user-group --uid 10001 --create-home --home-dir /var/lib/mirror-neuron mirror-neuron
COPY --from=build /opt/mirror-neuron /opt/mirror-neuron
# The examples seed the bundles directory (a fresh volume mounted there starts with them).
COPY --chown=mirror-neuron:mirror-neuron examples/ /srv/bundles/
ENV PATH=/opt/mirror-neuron/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MIRROR_NEURON_API_HOST=0.0.0.0 \
    MIRROR_NEURON_BUNDLES_DIR=/srv/bundles
USER mirror-neuron
WORKDIR /var/lib/mirror-neuron
EXPOSE 4000
# /api/v1/health/ready (or the operations listener's /readyz when MIRROR_NEURON_METRICS_PORT is set).
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=3 CMD ["python3", "-m", "app.healthcheck"]
ENTRYPOINT ["tini", "--", "mirror-neuron"]
CMD ["serve"]
