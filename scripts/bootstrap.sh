#!/usr/bin/env bash
# Creates .venv if missing and installs every package of the project into it (editable),
# torch first and pinned. Safe to run again: it only installs what changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv with $("$python" --version)"
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
# Some machines' pip configuration names local indexes that may not exist; that is noise here.
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

# A stamp of everything that decides the install; unchanged means nothing to do.
stamp=.venv/.tradebot-install-stamp
want="$(cat constraints.txt requirements-dev.txt */pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

echo "bootstrap: installing (torch first, pinned by constraints.txt)"
quiet "${pip[@]}" install --upgrade pip wheel
# torch before anything that depends on it: an unpinned resolution pulls CUDA wheels.
quiet "${pip[@]}" install -c constraints.txt torch
packages=(common api-gateway data-collector data-processor model-trainer inferencer trader web-interface)
editable=()
for p in "${packages[@]}"; do editable+=(-e "./$p"); done
quiet "${pip[@]}" install -c constraints.txt "${editable[@]}" -r requirements-dev.txt
echo "$want" > "$stamp"
echo "bootstrap: done"
