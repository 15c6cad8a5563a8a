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
# --- trading latency (trader + inferencer): tick -> decision -> order accepted by the KIS simulator ---
.venv/bin/python scripts/bench/trading_latency.py --command "$command" "$@"
# --- end trading latency ---
# --- model-trainer: API training job on ../shared/data/krx-daily (5 seeds), A3C vs SB3 A2C env-steps/s,
#     backtest bars/s. Needs requirements-bench.txt (stable-baselines3); skip with BENCH_SKIP_MODEL_TRAINER=1 ---
if [[ "${BENCH_SKIP_MODEL_TRAINER:-0}" != "1" ]]; then
    .venv/bin/python scripts/bench/trainer.py --command "$command" "$@"
fi
# --- end model-trainer ---
exec .venv/bin/python scripts/bench/ingest.py --command "$command" "$@"
