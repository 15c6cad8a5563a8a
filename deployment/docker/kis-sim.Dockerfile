# syntax=docker/dockerfile:1
# trading-bot kis-sim: the KIS simulator, a safe market speaking the KIS protocol (docs/kis_simulator.md).
# Build from the repository root (scripts/deploy.sh does):
#   docker build -f deployment/docker/kis-sim.Dockerfile -t trading-bot/kis-sim .
# Only tradebot-common is installed, pinned by constraints.txt.

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY constraints.txt ./
# torch is not in this image: kis-sim does not depend on it (tests/deployment check the closure).
# Dependency layer: the project files with empty packages, so that this layer is rebuilt only
# when a pyproject.toml or constraints.txt changes, not on every source edit.
COPY common/pyproject.toml common/
RUN mkdir -p common/src/common \
 && pip install -c constraints.txt ./common
COPY common/src common/src
RUN pip install --no-deps --force-reinstall -c constraints.txt ./common \
 && pip check

FROM python:3.11-slim AS runtime
# The root filesystem may be read-only: no bytecode is written at run time (pip compiled it),
# temporary files go to /tmp and data to /app/var, both volumes (tmpfs / emptyDir).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRADEBOT_ENVIRONMENT=production \
    KIS_SIM_HOST=0.0.0.0
RUN groupadd --system --gid 10001 tradebot \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin tradebot \
 && mkdir -p /app/var \
 && chown -R 10001:10001 /app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
VOLUME ["/app/var"]
USER 10001:10001
EXPOSE 9443 21000 29443 31000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('KIS_SIM_PAPER_REST_PORT', '29443') + '/admin/health', timeout=4)"]
CMD ["tradebot-kis-sim"]
