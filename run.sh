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
    .venv/bin/python -m pip install -q -e ".[dev,bench,scale,ros2build]" >&2
    rm -f .venv/.deps-* && touch "$stamp"
  fi
  # control_msgs (FollowJointTrajectory): an installed ROS 2's, else built once from the interface
  # files in hardware/ros2_interfaces (cached by a hash of its inputs: later runs cost ~0.1 s)
  .venv/bin/python -m simgate.hardware.ros2_action_build \
    || echo "[simgate] warning: no control_msgs: the ROS 2 FollowJointTrajectory action is unavailable" >&2
}

case "${1:-}" in
  main) setup; shift; exec .venv/bin/simgate pipeline "$@" ;;
  test) setup; shift; exec .venv/bin/python -m pytest "$@" ;;
  *) echo "usage: $0 main|test" >&2; exit 2 ;;
esac
