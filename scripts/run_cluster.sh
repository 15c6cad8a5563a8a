#!/usr/bin/env bash
# Runs trading-bot in distributed mode on this machine: the KIS simulator and the seven
# services as separate processes against the local PostgreSQL and RabbitMQ, each configured
# only by environment variables. Waits until every /readyz answers, prints the URLs, and stops
# every process (SIGTERM, then SIGKILL) on Ctrl-C or when this script is terminated.
#
#   scripts/run_cluster.sh                                 # database tradebot_cluster, ports 8000-8005, 8080
#   scripts/run_cluster.sh --inferencers 2 --gateways 2 --traders 2
#   scripts/run_cluster.sh --free-ports --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/mine
#   scripts/run_cluster.sh --help
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
# exec: signals reach the Python runner directly, which stops every process it started.
exec .venv/bin/python -m common.cluster "$@"
