# Minimal image; the daemon issue completes it (multi-stage, HEALTHCHECK, `consumer run`).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY consumer ./consumer
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/consumer --create-home consumer
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER consumer
WORKDIR /var/lib/consumer
ENTRYPOINT ["consumer"]
CMD ["check", "-c", "/etc/consumer/config.yaml"]
