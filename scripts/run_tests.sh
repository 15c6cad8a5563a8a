#!/usr/bin/env bash
# Installs everything into .venv, makes sure PostgreSQL and RabbitMQ are up, then runs the
# linters and the whole test suite. Extra arguments go to pytest (e.g. -k bus, -x).
#
#   TRADEBOT_TEST_DATABASE_URL  PostgreSQL server for the integration tier
#                               (default postgresql+asyncpg://postgres@127.0.0.1:5432/postgres)
#   TRADEBOT_TEST_AMQP_URL      RabbitMQ for the integration tier (default amqp://guest:guest@127.0.0.1:5672/)
#   CI=true                     the integration tier is required: unreachable servers fail the run
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/bootstrap.sh
# helm, kubectl and a wheelhouse for the deployment tests (their own stamp; fast when present).
bash scripts/install_tools.sh

export TRADEBOT_TEST_DATABASE_URL="${TRADEBOT_TEST_DATABASE_URL:-postgresql+asyncpg://postgres@127.0.0.1:5432/postgres}"
export TRADEBOT_TEST_AMQP_URL="${TRADEBOT_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"

# host:port of a URL, for a plain TCP check.
endpoint() { .venv/bin/python -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print((p.hostname or "127.0.0.1") + ":" + str(p.port or sys.argv[2]))' "$1" "$2"; }
reachable() { .venv/bin/python -c 'import socket, sys; h, p = sys.argv[1].rsplit(":", 1); socket.create_connection((h, int(p)), timeout=2).close()' "$1" 2>/dev/null; }
is_local() { case "$1" in 127.*|localhost:*) return 0;; *) return 1;; esac; }

wait_for() {  # name endpoint seconds
    local deadline=$((SECONDS + $3))
    while ! reachable "$2"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 1
    done
}

start_postgresql() { pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start; }
start_rabbitmq() { rabbitmq-server -detached; }

ensure() {  # name endpoint start-function tool
    local name=$1 where=$2 start=$3 tool=$4
    reachable "$where" && return 0
    if is_local "$where" && command -v "$tool" >/dev/null 2>&1; then
        echo "run_tests: $name is not answering on $where; starting the local one"
        "$start" >/dev/null 2>&1 || true
        wait_for "$name" "$where" 60 && return 0
    fi
    if [ "${CI:-}" = "true" ]; then
        echo "run_tests: $name unreachable on $where; the integration tier is required on CI" >&2
        exit 1
    fi
    echo "run_tests: $name unreachable on $where; its integration tests will be skipped" >&2
}

ensure PostgreSQL "$(endpoint "$TRADEBOT_TEST_DATABASE_URL" 5432)" start_postgresql pg_ctlcluster
ensure RabbitMQ "$(endpoint "$TRADEBOT_TEST_AMQP_URL" 5672)" start_rabbitmq rabbitmq-server

echo "run_tests: ruff"
.venv/bin/ruff check .
echo "run_tests: mypy"
.venv/bin/mypy
echo "run_tests: pytest"
exec .venv/bin/python -m pytest "$@"
