#!/usr/bin/env bash
# One command for everything: sets up what is missing, then runs the benchmarks.
#   bash bench/run.sh              # overhead + generation + streaming
#   bash bench/run.sh overhead     # only one of them (extra arguments go to the script)
#   bash bench/run.sh profile      # py-spy profile of the gateway under load
set -euo pipefail
cd "$(dirname "$0")/.."
bash bench/setup.sh
what=${1:-all}; [ $# -gt 0 ] && shift
case "$what" in
  overhead)   .venv/bin/python bench/overhead.py "$@" ;;
  generation) .venv/bin/python bench/generation.py "$@" ;;
  streaming)  .venv/bin/python bench/streaming.py "$@" ;;
  profile)    .venv/bin/python bench/profile_gateway.py "$@" ;;
  all)        .venv/bin/python bench/overhead.py
              .venv/bin/python bench/generation.py
              .venv/bin/python bench/streaming.py ;;
  *) echo "usage: bash bench/run.sh [all|overhead|generation|streaming|profile] [args…]" >&2; exit 2 ;;
esac
