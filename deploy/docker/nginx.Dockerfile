# nginx for the fleet; its config is rendered from the topology and mounted at /etc/modelfleet/nginx.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN command -v nginx >/dev/null && command -v curl >/dev/null \
    || (apt-get update && apt-get install -y --no-install-recommends nginx curl \
        && rm -rf /var/lib/apt/lists/*)
RUN useradd --system --uid 10001 modelfleet
USER modelfleet
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/stub_status"]
# SIGQUIT is nginx's graceful stop: in-flight requests finish.
STOPSIGNAL SIGQUIT
CMD ["nginx", "-e", "stderr", "-c", "/etc/modelfleet/nginx/nginx.conf"]
