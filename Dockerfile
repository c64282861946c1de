# aigateway: the server, as the README's serve command runs it, as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
RUN python -m venv /opt/aigateway \
    && /opt/aigateway/bin/pip install --no-cache-dir --disable-pip-version-check .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/aigateway --create-home aigateway
COPY --from=build /opt/aigateway /opt/aigateway
COPY app.yml /opt/aigateway/app.yml
ENV PATH=/opt/aigateway/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite+aiosqlite:////var/lib/aigateway/aigateway.db \
    PORT=8080
USER aigateway
WORKDIR /var/lib/aigateway
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=2)"
STOPSIGNAL SIGTERM
CMD ["python", "-m", "app", "serve"]
