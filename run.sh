#!/usr/bin/env bash
# simgate's two entry points; both create/refresh .venv first.
#   ./run.sh main   run the main job on embedded defaults
#   ./run.sh test   run the whole test suite
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-$(command -v python3.11 || command -v python3)}

setup() {
  if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
  fi
  local stamp=".venv/.deps-$(cat pyproject.toml | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "[simgate] installing dependencies into .venv (first run only) ..." >&2
    .venv/bin/python -m pip install -q --upgrade pip >&2
    # the CPU build of torch first: an unpinned torch would pull GBs of CUDA wheels
    .venv/bin/python -m pip install -q "torch==2.13.0" >&2
    .venv/bin/python -m pip install -q -e ".[dev,bench,scale]" >&2
    rm -f .venv/.deps-* && touch "$stamp"
  fi
}

case "${1:-}" in
  main) setup; shift; exec .venv/bin/simgate pipeline "$@" ;;
  test) setup; shift; exec .venv/bin/python -m pytest "$@" ;;
  *) echo "usage: $0 main|test" >&2; exit 2 ;;
esac
