"""The cluster the real-pod tests run on.

By default a local one: the control plane, a real node (kubelet + containerd + runc + CNI +
kube-proxy + CoreDNS) and Traefik, with the images of this working tree built by podman and imported
into the node (conch_cluster.images). Any other cluster works the same way:

    CONCH_E2E_KUBECONFIG     a kubeconfig (kind, a cloud cluster): its current context is used
    CONCH_E2E_INGRESS_URL    where that cluster's ingress answers, e.g. http://127.0.0.1:80
    CONCH_E2E_INGRESS_CLASS  the IngressClass to use (default: the cluster's default class)
    CONCH_E2E_GATEWAY        <namespace>/<name> of a Gateway API Gateway whose listener is that same
                             ingress URL, for the chart's HTTPRoute (without it, that test is skipped)
    CONCH_E2E_IMAGE_REGISTRY / CONCH_E2E_IMAGE_TAG   images to install (default: the chart's)
    CONCH_E2E_UPGRADE_TAG    a second tag of the same images, for the upgrade test (default: the
                             same tag; the rollout is then forced by a pod annotation)

CONCH_E2E_IMAGES names an images.json of `make images` to use instead of building the working tree.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
from conch_cluster import GPU_NODES, ControlPlane, toolchain
from conch_cluster.diagnostics import host_report, pod_report

KWOK_ANNOTATION = "kwok.x-k8s.io/node"


@dataclass
class E2ECluster:
    kubeconfig: Path
    bin_dir: Path
    ingress_url: str
    ingress_class: str
    image_values: dict[str, Any]
    upgrade_tag: str | None
    helm_home: Path
    gateway_parent: dict[str, str] | None  # the Gateway (name, namespace) an HTTPRoute attaches to
    plane: ControlPlane | None = None  # the local cluster
    manifest: dict | None = None
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig),
                    "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                    **{f"HELM_{k}_HOME": str(self.helm_home / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.bin_dir / "kubectl"), *args], input=input, env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def get(self, *args: str) -> Any:
        result = self.kubectl("get", *args, "-o", "json", check=False)
        if result.returncode:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(result.stderr)
        return json.loads(result.stdout)

    def helm(self, *args: str, check: bool = True, timeout: float = 360) -> subprocess.CompletedProcess:
        """helm; a failure (above all a `--wait` that timed out) is reported with the pods, their events
        and the logs of those not ready, so a red CI run says why."""
        try:
            result = subprocess.run([str(self.bin_dir / "helm"), *args], env=self.env, capture_output=True,
                                    text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"helm {' '.join(args)} did not finish in {timeout:.0f} s\n"
                                 + pod_report(self.kubectl) + "\n\n" + host_report()) from None
        if check and result.returncode:
            raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr}\n"
                                 + pod_report(self.kubectl) + "\n\n" + host_report())
        return result

    def real_nodes(self) -> set[str]:
        return {n["metadata"]["name"] for n in self.get("nodes")["items"]
                if KWOK_ANNOTATION not in n["metadata"].get("annotations", {})}

    def add_image_tag(self, tag: str, new_tag: str) -> None:
        """Another tag of the Conch images, present on the local node (as a push to a registry would make it)."""
        assert self.plane is not None
        for name in ("conch-operator", "conch-gateway", "triton-cpu"):
            source = self.manifest["images"][name]["ref"]
            target = source.rsplit(":", 1)[0] + ":" + new_tag
            self.plane.node.ctr("images", "tag", "--force", source, target)


def _local(tmp_path_factory) -> Iterator[E2ECluster]:
    from conch_cluster import images, ingress

    manifest_file = os.environ.get("CONCH_E2E_IMAGES")
    manifest = json.loads(Path(manifest_file).read_text()) if manifest_file else images.ensure()
    state = tmp_path_factory.mktemp("e2e-cluster")
    plane = ControlPlane(state, nodes=GPU_NODES, real_node=True, images=manifest, start_timeout=240)
    plane.start()
    try:
        yield E2ECluster(kubeconfig=plane.kubeconfig, bin_dir=plane.bin_dir, ingress_url=plane.ingress_url,
                         ingress_class="traefik", image_values={"tag": manifest["tag"]},
                         upgrade_tag=f"{manifest['tag']}-upgrade", helm_home=state / "helm",
                         gateway_parent={"name": ingress.GATEWAY, "namespace": ingress.NAMESPACE}, plane=plane,
                         manifest=manifest)
    finally:
        plane.stop()


def _existing(tmp_path_factory, kubeconfig: str) -> Iterator[E2ECluster]:
    url = os.environ.get("CONCH_E2E_INGRESS_URL")
    if not url:
        raise pytest.UsageError("CONCH_E2E_KUBECONFIG needs CONCH_E2E_INGRESS_URL (where the cluster's ingress answers)")
    gateway = os.environ.get("CONCH_E2E_GATEWAY")
    parent = dict(zip(("namespace", "name"), gateway.split("/", 1))) if gateway else None
    image = {k: v for k, v in (("registry", os.environ.get("CONCH_E2E_IMAGE_REGISTRY")),
                               ("tag", os.environ.get("CONCH_E2E_IMAGE_TAG"))) if v}
    yield E2ECluster(kubeconfig=Path(kubeconfig), bin_dir=toolchain.ensure(), ingress_url=url.rstrip("/"),
                     ingress_class=os.environ.get("CONCH_E2E_INGRESS_CLASS", ""), image_values=image,
                     upgrade_tag=os.environ.get("CONCH_E2E_UPGRADE_TAG"),
                     helm_home=tmp_path_factory.mktemp("e2e-helm"), gateway_parent=parent)


@pytest.fixture(scope="session")
def e2e_cluster(tmp_path_factory) -> Iterator[E2ECluster]:
    kubeconfig = os.environ.get("CONCH_E2E_KUBECONFIG")
    yield from (_existing(tmp_path_factory, kubeconfig) if kubeconfig else _local(tmp_path_factory))
