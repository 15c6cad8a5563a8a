#!/usr/bin/env bash
# Installs everything into .venv (first run only) and starts trading-bot in all-in-one mode:
# one process, SQLite under ./var, the in-process bus, the API gateway on :8000 and the
# dashboard on :8080. Stop it with Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
export TRADEBOT_LOG_JSON="${TRADEBOT_LOG_JSON:-false}"
exec .venv/bin/tradebot-allinone "$@"
