# The inferrer and modelhost images: one Dockerfile, two targets, sharing every layer but the command.
# With a registry: docker-compose build. Without one: deploy/docker/build-images.sh (local base + wheels).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS runtime
# --no-index for an air-gapped build from deploy/docker/wheelhouse; empty: PyPI as well.
ARG PIP_ARGS=""
RUN useradd --system --uid 10001 --create-home modelfleet \
    && python3 -m venv /opt/venv \
    && mkdir -p /data /jobs /var/cache/modelfleet /etc/modelfleet \
    && chown modelfleet /data /jobs /var/cache/modelfleet
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

# Dependencies first: this layer changes only with pyproject.toml.
COPY deploy/docker/wheelhouse/ /wheels/
COPY pyproject.toml constraints.txt deploy/docker/requirements.py /src/
RUN python3 /src/requirements.py /src/pyproject.toml > /tmp/requirements.txt \
    && pip install --disable-pip-version-check --no-cache-dir ${PIP_ARGS} --find-links /wheels \
       -c /src/constraints.txt -r /tmp/requirements.txt \
    && rm -rf /wheels /tmp/requirements.txt

# Then the code.
COPY README.md /src/README.md
COPY artifacts /src/artifacts
COPY datafiles /src/datafiles
COPY deploy /src/deploy
COPY inferrer /src/inferrer
COPY metrics /src/metrics
COPY modelhost /src/modelhost
COPY nginx /src/nginx
COPY wire /src/wire
RUN pip install --disable-pip-version-check --no-cache-dir --no-deps --no-index --no-build-isolation /src \
    && rm -rf /src

USER modelfleet
WORKDIR /home/modelfleet
# Compose sets HEALTH_URL per service (each node has its own port).
ENV HEALTH_URL=http://127.0.0.1:8000/health/live
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=5 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTH_URL'], timeout=2)"]

FROM runtime AS inferrer
ENV INFERRER_REPOSITORY_DIR=/data/repository
EXPOSE 8000
# The one start command of every service (deploy/serve_command.py); it execs uvicorn, which is then
# PID 1 (exec form): it gets SIGTERM and drains in-flight requests.
CMD ["python3", "-m", "deploy.serve_command", "inferrer", "--port", "8000"]

FROM runtime AS modelhost
ENV MODELHOST_CACHE_DIR=/var/cache/modelfleet HEALTH_URL=http://127.0.0.1:8101/health/ready
EXPOSE 8101
CMD ["python3", "-m", "deploy.serve_command", "modelhost", "--port", "8101"]
