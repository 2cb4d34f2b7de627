"""Locate (and if needed build) the pinned control-plane binaries.

The binaries are built by ``cluster/build-tools.sh`` into a version-keyed cache outside
the repo; this module only knows the layout of that cache and how to invoke the script.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from .errors import ClusterError

# Must match cluster/go/k8s/go.mod (checked by pinned_version() when the repo is there).
K8S_VERSION = "v1.34.4"

BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
    # what a real node runs (node.py)
    "kubelet",
    "kube-proxy",
    "coredns",
    "traefik",
)

_CLUSTER_DIR = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    return Path(os.environ.get("CONCH_CACHE") or Path.home() / ".cache" / "conch")


def pinned_version() -> str:
    """The Kubernetes version pinned by the wrapper go.mod (falls back to K8S_VERSION
    when the package is installed without the repo next to it)."""
    gomod = _CLUSTER_DIR / "go" / "k8s" / "go.mod"
    if gomod.is_file():
        m = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", gomod.read_text(), re.MULTILINE)
        if m:
            return m.group(1)
    return K8S_VERSION


def bin_dir(version: str | None = None) -> Path:
    """Directory holding the binaries; ``CONCH_BIN_DIR`` overrides the cache layout."""
    override = os.environ.get("CONCH_BIN_DIR")
    if override:
        return Path(override)
    return cache_root() / f"k8s-{version or pinned_version()}" / "bin"


def kwok_stages_file(bins: Path) -> Path:
    """kwok Stage definitions shipped by build-tools.sh next to the bin dir."""
    return bins.parent / "share" / "kwok-stages.yaml"


def gateway_api_crds_file(bins: Path) -> Path:
    """The Gateway API CRDs (standard channel) of the release the built Traefik implements."""
    return bins.parent / "share" / "gateway-api-crds.yaml"


def missing(bins: Path | None = None) -> list[str]:
    bins = bins or bin_dir()
    out = [b for b in BINARIES if not os.access(bins / b, os.X_OK)]
    out += [f.name for f in (kwok_stages_file(bins), gateway_api_crds_file(bins)) if not f.is_file()]
    return out


def build_script() -> Path:
    override = os.environ.get("CONCH_BUILD_TOOLS")
    return Path(override) if override else _CLUSTER_DIR / "build-tools.sh"


def build(quiet: bool = False) -> Path:
    """Run build-tools.sh (a no-op when everything is cached); returns the bin dir.

    Progress goes to our stderr unless ``quiet``; a cold build takes tens of minutes.
    """
    script = build_script()
    if not script.is_file():
        raise ClusterError(f"toolchain missing and build script not found at {script}")
    proc = subprocess.run(
        ["bash", str(script)],
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if quiet else None,
        text=True,
    )
    if proc.returncode != 0:
        detail = f":\n{proc.stderr[-4000:]}" if quiet else ""
        raise ClusterError(f"{script} failed with exit code {proc.returncode}{detail}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise ClusterError(f"{script} printed no bin dir")
    return Path(lines[-1])


def ensure(build_if_missing: bool = True) -> Path:
    """Return a bin dir with every binary present, building them if allowed."""
    bins = bin_dir()
    todo = missing(bins)
    if not todo:
        return bins
    if not build_if_missing or os.environ.get("CONCH_BIN_DIR"):
        raise ClusterError(
            f"missing in {bins}: {', '.join(todo)}; run `python -m conch_cluster build`"
        )
    bins = build()
    todo = missing(bins)
    if todo:
        raise ClusterError(f"build finished but still missing in {bins}: {', '.join(todo)}")
    return bins
