# consumer: cloud-telephony call events into one call-record store.
#
#   docker build -t consumer .
#   docker run -d --name consumer --stop-timeout 30 \
#     -v /srv/consumer/config.yaml:/etc/consumer/config.yaml:ro \
#     -v consumer-state:/var/lib/consumer -p 8080:8080 consumer
#
# The configuration's listener must bind every interface (http: {listen: "0.0.0.0:8080"}) for
# push providers, /metrics and the HEALTHCHECK below; a SQLite sink belongs in the volume
# (sqlite:////var/lib/consumer/events.db). See README.md, "Docker".

# -- build: install the package and its dependencies into a virtualenv ----------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/consumer
WORKDIR /src
COPY pyproject.toml README.md ./
COPY consumer ./consumer
RUN /opt/consumer/bin/pip install '.[all]' && /opt/consumer/bin/consumer --version

# -- runtime: the virtualenv only, run by an unprivileged user ------------------------------------
FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/consumer --create-home \
        --shell /usr/sbin/nologin consumer \
    && mkdir -p /etc/consumer
COPY --from=build /opt/consumer /opt/consumer
# HOME: the RocketMQ client writes $HOME/logs. The drain deadline stays below `docker stop`'s
# default 10 s grace; with --stop-timeout 30, CONSUMER_DRAIN_TIMEOUT=20 gives in-flight work longer.
ENV PATH=/opt/consumer/bin:$PATH \
    HOME=/var/lib/consumer \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CONSUMER_DRAIN_TIMEOUT=8 \
    CONSUMER_HEALTHZ=http://127.0.0.1:8080/healthz
USER consumer:consumer
WORKDIR /var/lib/consumer
VOLUME ["/var/lib/consumer"]
EXPOSE 8080
# The listener process answers /healthz; a failed or refused request exits 1 (no curl in slim).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['CONSUMER_HEALTHZ'], timeout=4)"]
ENTRYPOINT ["consumer"]
CMD ["run", "-c", "/etc/consumer/config.yaml"]
