#!/usr/bin/env bash
# Installs what the benchmarks need besides the project venv (made by `make install`):
#   - wrk, the load generator (Debian package);
#   - bench/.venv-peers: LiteLLM's proxy, llama-cpp-python's server and py-spy, kept out of the
#     project venv. llama-cpp-python is pinned to the project venv's version, so pip reuses the
#     wheel `make install` built (the project's pip cache, ~/.cache/conch/pip, same compiler
#     flags) instead of compiling llama.cpp again: both servers run the same llama.cpp.
# Idempotent: does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT_PY=.venv/bin/python
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-$HOME/.cache/conch/pip}
if [ "$(uname -m)" = x86_64 ]; then  # as the Makefile builds it (see there)
  export CFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" CXXFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
fi
PEERS=bench/.venv-peers
LITELLM_VERSION=${LITELLM_VERSION:-1.106.2}
PYSPY_VERSION=${PYSPY_VERSION:-0.4.3}

if [ ! -x "$PROJECT_PY" ]; then
  echo "[bench] .venv is missing: run 'make install' first" >&2
  exit 1
fi

if ! command -v wrk >/dev/null; then
  echo "[bench] installing wrk (apt)"
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq wrk
fi

LLAMA_VERSION=$("$PROJECT_PY" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')
BASE_PY=$("$PROJECT_PY" -c 'import sys; print(sys._base_executable)')

if [ ! -x "$PEERS/bin/python" ]; then
  echo "[bench] creating $PEERS with $BASE_PY"
  "$BASE_PY" -m venv "$PEERS"
  "$PEERS/bin/python" -m pip install --quiet --upgrade pip
fi

want=("litellm[proxy]==$LITELLM_VERSION" "llama-cpp-python[server]==$LLAMA_VERSION" "py-spy==$PYSPY_VERSION")
if ! "$PEERS/bin/python" - "$LITELLM_VERSION" "$LLAMA_VERSION" "$PYSPY_VERSION" <<'EOF' 2>/dev/null
import importlib.metadata as m, sys
want = dict(zip(("litellm", "llama_cpp_python", "py-spy"), sys.argv[1:]))
have = {p: m.version(p) for p in want}
import sse_starlette, starlette_context  # llama_cpp.server's extras
sys.exit(0 if have == want else 1)
EOF
then
  echo "[bench] installing ${want[*]} into $PEERS"
  "$PEERS/bin/python" -m pip install --quiet "${want[@]}"
fi
echo "[bench] ready: wrk $(wrk --version 2>&1 | head -1 | awk '{print $2}'), $PEERS"
