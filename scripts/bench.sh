#!/usr/bin/env bash
# Benchmarks (not tests): prints the figures and records them in docs/benchmarks.md.
#
#   scripts/bench.sh [--quick]
#
# Needs the PostgreSQL and RabbitMQ of the integration tier (TRADEBOT_TEST_DATABASE_URL,
# TRADEBOT_TEST_AMQP_URL, same defaults as scripts/run_tests.sh). --quick uses 200k ticks
# instead of 1M and fewer bars for the indicator timing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
command="scripts/bench.sh${1:+ $*}"
exec .venv/bin/python scripts/bench/ingest.py --command "$command" "$@"
