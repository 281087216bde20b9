# The stream broker: Debian's redis-server. Compose and Swarm give its command (deploy/broker.py:
# append-only, every write on disk before it is answered, the password from the environment or a
# secret's file); its data is a volume at /data.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN command -v redis-server >/dev/null && command -v redis-cli >/dev/null \
    || (apt-get update \
        && apt-get install -y --no-install-recommends redis-server redis-tools \
        && rm -rf /var/lib/apt/lists/*)
RUN useradd --system --uid 10001 modelfleet && mkdir -p /data && chown modelfleet /data
USER modelfleet
WORKDIR /data
EXPOSE 6379
CMD ["redis-server", "--port", "6379", "--dir", "/data", "--appendonly", "yes", "--appendfsync", "always"]
