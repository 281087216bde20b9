# Prometheus, the nginx exporter and Alertmanager (one image, three services); config and targets
# are mounted.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN command -v prometheus >/dev/null && command -v prometheus-nginx-exporter >/dev/null \
    && command -v prometheus-alertmanager >/dev/null && command -v curl >/dev/null \
    || (apt-get update \
        && apt-get install -y --no-install-recommends prometheus prometheus-nginx-exporter \
           prometheus-alertmanager curl \
        && rm -rf /var/lib/apt/lists/*)
RUN useradd --system --uid 10001 modelfleet && mkdir -p /prometheus /alertmanager \
    && chown modelfleet /prometheus /alertmanager
# The fleet's rules, console pages and Alertmanager config: an edit takes an image build.
COPY monitoring /etc/modelfleet/monitoring
USER modelfleet
EXPOSE 9090
HEALTHCHECK --interval=5s --timeout=3s --retries=5 CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9090/-/ready"]
CMD ["prometheus", "--config.file=/etc/modelfleet/prometheus/prometheus.yml", \
     "--storage.tsdb.path=/prometheus", "--web.listen-address=0.0.0.0:9090"]
