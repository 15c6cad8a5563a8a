#!/bin/sh
# Imports the trading-bot data view and saved searches (saved-objects.ndjson) into Kibana once
# it answers. Safe to run again: existing objects are overwritten.
set -eu
kibana="${KIBANA_URL:-http://kibana:5601}"
objects="${SAVED_OBJECTS:-/setup/saved-objects.ndjson}"
tries=0
until curl -fsS "$kibana/api/status" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 120 ]; then
        echo "kibana-setup: $kibana did not answer in 10 minutes" >&2
        exit 1
    fi
    sleep 5
done
curl -fsS -X POST "$kibana/api/saved_objects/_import?overwrite=true" -H "kbn-xsrf: true" --form "file=@$objects"
echo
