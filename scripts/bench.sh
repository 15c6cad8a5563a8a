#!/usr/bin/env bash
# Benchmarks (not tests): prints the figures and records them in docs/benchmarks.md (the summary
# table at the top, and a dated section per benchmark). Every figure is a ratio against a
# reference measured in the same run, or a time against the issue's goal.
#
#   scripts/bench.sh [--quick]          # --quick: under 3 minutes; the full run: under 20
#   BENCH_ONLY="gateway startup" scripts/bench.sh --quick    # a subset, by the names below
#
#   ingest       tick ingest end to end vs a bare COPY; indicators vs TA-Lib    (bench/ingest.py)
#   gateway      api-gateway req/s and added latency vs the service directly    (bench/gateway.py)
#   latency      tick -> decision -> order accepted, all-in-one shape           (bench/trading_latency.py)
#   distributed  the same across processes, and each service's memory at rest
#                and under the ingest load                                      (bench/distributed.py)
#   trainer      A3C-LSTM env-steps/s vs SB3 A2C, backtest bars/s              (bench/trainer.py; needs
#                requirements-bench.txt; skip with BENCH_SKIP_MODEL_TRAINER=1)
#   startup      all-in-one cold start to the dashboard, its memory at rest    (bench/startup.py)
#
# Needs the PostgreSQL and RabbitMQ of the integration tier (TRADEBOT_TEST_DATABASE_URL,
# TRADEBOT_TEST_AMQP_URL, same defaults as scripts/run_tests.sh). Every server listens on
# 127.0.0.1 and is stopped when its benchmark ends; databases and queues are the run's own.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
command="scripts/bench.sh${1:+ $*}"
only="${BENCH_ONLY:-ingest gateway latency distributed trainer startup}"
if [[ "${BENCH_SKIP_MODEL_TRAINER:-0}" == "1" ]]; then
    only="${only//trainer/}"
fi
declare -A scripts=(
    [ingest]=ingest.py [gateway]=gateway.py [latency]=trading_latency.py
    [distributed]=distributed.py [trainer]=trainer.py [startup]=startup.py
)
for name in $only; do
    if [[ -z "${scripts[$name]:-}" ]]; then
        echo "bench.sh: unknown benchmark '$name' (known: ${!scripts[*]})" >&2
        exit 2
    fi
done
started=$SECONDS
failed=()
timings=()
for name in $only; do
    echo "--- $name ($(uptime | sed 's/.*load/load/'))" >&2
    begun=$SECONDS
    # One failing benchmark does not hide the others' figures; the run still fails at the end.
    .venv/bin/python "scripts/bench/${scripts[$name]}" --command "$command" "$@" || failed+=("$name")
    timings+=("$name $((SECONDS - begun)) s")
done
.venv/bin/python scripts/bench/benchlib.py --command "$command" --benchmarks "$(IFS=,; echo "${timings[*]}")" \
    --seconds "$((SECONDS - started))" --failed "${failed[*]}"
if (( ${#failed[@]} )); then
    echo "bench.sh: failed: ${failed[*]}" >&2
    exit 1
fi
