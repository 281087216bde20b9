# nginx for the fleet; its config is rendered from the topology and mounted at /etc/modelfleet/nginx.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN command -v nginx >/dev/null && command -v curl >/dev/null \
    || (apt-get update && apt-get install -y --no-install-recommends nginx curl \
        && rm -rf /var/lib/apt/lists/*)
RUN useradd --system --uid 10001 modelfleet
# Swarm and Kubernetes: the upstream follows a DNS name as the orchestrator starts and stops nodes
# (the script is executable in git, and COPY keeps its mode).
COPY deploy/docker/nginx-dns-upstreams.sh /usr/local/bin/modelfleet-nginx-dns
USER modelfleet
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/stub_status"]
# SIGQUIT is nginx's graceful stop: in-flight requests finish.
STOPSIGNAL SIGQUIT
CMD ["nginx", "-e", "stderr", "-c", "/etc/modelfleet/nginx/nginx.conf"]
