# syntax=docker/dockerfile:1
# trading-bot trader: order management and risk engine.
# Build from the repository root (scripts/deploy.sh does):
#   docker build -f deployment/docker/trader.Dockerfile -t trading-bot/trader .
# Only tradebot-common and this service are installed, pinned by constraints.txt.

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY constraints.txt ./
# torch is not in this image: trader does not depend on it (tests/deployment check the closure).
# Dependency layer: the project files with empty packages, so that this layer is rebuilt only
# when a pyproject.toml or constraints.txt changes, not on every source edit.
COPY common/pyproject.toml common/
COPY trader/pyproject.toml trader/
RUN mkdir -p common/src/common trader/src/trader \
 && pip install -c constraints.txt ./common ./trader
COPY common/src common/src
COPY trader/src trader/src
RUN pip install --no-deps --force-reinstall -c constraints.txt ./common ./trader \
 && pip check

FROM python:3.11-slim AS runtime
# The root filesystem may be read-only: no bytecode is written at run time (pip compiled it),
# temporary files go to /tmp and data to /app/var, both volumes (tmpfs / emptyDir).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRADEBOT_ENVIRONMENT=production \
    TRADER_HOST=0.0.0.0
RUN groupadd --system --gid 10001 tradebot \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin tradebot \
 && mkdir -p /app/var \
 && chown -R 10001:10001 /app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
VOLUME ["/app/var"]
USER 10001:10001
EXPOSE 8005
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('TRADER_PORT', '8005') + '/healthz', timeout=4)"]
CMD ["tradebot-trader"]
