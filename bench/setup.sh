#!/usr/bin/env bash
# Installs what the benchmarks need besides the project venv (made by `make install`):
#   - wrk, the load generator (Debian package);
#   - bench/.venv-peers: LiteLLM's proxy, llama-cpp-python's server and py-spy, kept out of the
#     project venv. llama-cpp-python is pinned to the project venv's version, so pip reuses the
#     wheel `make install` built (the project's pip cache, ~/.cache/conch/pip, same compiler
#     flags) instead of compiling llama.cpp again: both servers run the same llama.cpp.
#   - ~/.cache/conch/llama-server-<version>/llama-server: llama.cpp's own server, built from the
#     llama.cpp sources that this llama-cpp-python version vendors (its sdist, from PyPI), with
#     the flags the Makefile builds llama-cpp-python with (native CPU, OpenMP, no AMX, Release);
#     no web UI, so the build downloads nothing. Kept outside the work tree (a build, not source).
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
LLAMA_SERVER_DIR=${CONCH_CACHE:-$HOME/.cache/conch}/llama-server-$LLAMA_VERSION  # bench/concurrency.py looks here
if [ ! -x "$LLAMA_SERVER_DIR/llama-server" ]; then
  echo "[bench] building llama-server from llama-cpp-python $LLAMA_VERSION's vendored llama.cpp (several minutes)"
  rm -rf "$LLAMA_SERVER_DIR" && mkdir -p "$LLAMA_SERVER_DIR/src"
  "$PROJECT_PY" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_VERSION" -d "$LLAMA_SERVER_DIR/src"
  tar -xzf "$LLAMA_SERVER_DIR"/src/llama_cpp_python-*.tar.gz -C "$LLAMA_SERVER_DIR/src"
  vendored=$(echo "$LLAMA_SERVER_DIR"/src/llama_cpp_python-*/vendor/llama.cpp)
  cmake -S "$vendored" -B "$LLAMA_SERVER_DIR/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF >"$LLAMA_SERVER_DIR/cmake.log"
  cmake --build "$LLAMA_SERVER_DIR/build" --target llama-server -j "$(nproc)" >"$LLAMA_SERVER_DIR/build.log"
  cp "$LLAMA_SERVER_DIR/build/bin/llama-server" "$LLAMA_SERVER_DIR/llama-server"
  rm -rf "$LLAMA_SERVER_DIR/src" "$LLAMA_SERVER_DIR/build"
fi

echo "[bench] ready: wrk $(wrk --version 2>&1 | head -1 | awk '{print $2}'), $PEERS, $LLAMA_SERVER_DIR/llama-server"
