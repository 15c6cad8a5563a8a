# syntax=docker/dockerfile:1
# trading-bot model-trainer: LSTM + A3C training and the model registry.
# Build from the repository root (scripts/deploy.sh does):
#   docker build -f deployment/docker/model-trainer.Dockerfile -t trading-bot/model-trainer .
# Only tradebot-common and this service are installed, pinned by constraints.txt.

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY constraints.txt ./
# torch first, from the PyTorch CPU index. constraints.txt pins torch==2.13.0 and the CPU build
# (2.13.0+cpu) satisfies that pin, so the install below keeps it; from PyPI the same version
# would bring the CUDA stack (several GB). torch's own dependencies come from the same index.
# The local wheel that scripts/bootstrap.sh installs is a file on the developer's machine and
# does not exist inside a build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0+cpu
# Dependency layer: the project files with empty packages, so that this layer is rebuilt only
# when a pyproject.toml or constraints.txt changes, not on every source edit.
COPY common/pyproject.toml common/
COPY model-trainer/pyproject.toml model-trainer/
RUN mkdir -p common/src/common model-trainer/src/model_trainer \
 && pip install -c constraints.txt ./common ./model-trainer
COPY common/src common/src
COPY model-trainer/src model-trainer/src
RUN pip install --no-deps --force-reinstall -c constraints.txt ./common ./model-trainer \
 && pip check

FROM python:3.11-slim AS runtime
# The root filesystem may be read-only: no bytecode is written at run time (pip compiled it),
# temporary files go to /tmp and data to /app/var, both volumes (tmpfs / emptyDir).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TRADEBOT_ENVIRONMENT=production \
    MODEL_TRAINER_HOST=0.0.0.0
RUN groupadd --system --gid 10001 tradebot \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin tradebot \
 && mkdir -p /app/var \
 && chown -R 10001:10001 /app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
VOLUME ["/app/var"]
USER 10001:10001
EXPOSE 8003
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MODEL_TRAINER_PORT', '8003') + '/healthz', timeout=4)"]
CMD ["tradebot-model-trainer"]
