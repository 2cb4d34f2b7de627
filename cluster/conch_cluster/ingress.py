"""The local cluster's ingress: Traefik (built from its Go module, imaged by images.py) as a pod on
the real node, serving both Ingress objects (IngressClass ``traefik``, the default) and the
Gateway API (GatewayClass ``traefik`` and one shared Gateway, ``conch-ingress/conch``).

Its entry point listens on port 80 of the node's address (a hostPort), where the host reaches it,
as a kind cluster's ingress is reached through the node container's mapped port. Manifests are
pure functions; ``install`` applies them and waits until Traefik answers.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import yaml

from .errors import ClusterError

NAMESPACE = "conch-ingress"
NAME = "traefik"
CLASS = "traefik"
GATEWAY = "conch"
WEB_PORT, PING_PORT, HOST_PORT = 8000, 9000, 80
INGRESS_CONTROLLER = "traefik.io/ingress-controller"
GATEWAY_CONTROLLER = "traefik.io/gateway-controller"


def rbac_rules() -> list[dict]:
    """Traefik's documented rules for its Ingress and Gateway API providers (read, plus status);
    its Kubernetes client also watches nodes and waits for that watch before serving any route."""
    read = ["get", "list", "watch"]
    gateway_kinds = ["gatewayclasses", "gateways", "httproutes", "grpcroutes", "tcproutes", "tlsroutes",
                     "referencegrants", "backendtlspolicies"]
    return [
        {"apiGroups": [""], "resources": ["services", "secrets", "configmaps", "nodes"], "verbs": read},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "ingressclasses"], "verbs": read},
        {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses/status"], "verbs": ["update"]},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": gateway_kinds, "verbs": read},
        {"apiGroups": ["gateway.networking.k8s.io"], "resources": [f"{k}/status" for k in gateway_kinds],
         "verbs": ["update"]},
    ]


def manifests(image: str) -> list[dict]:
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "conch-local-cluster"}
    meta = {"namespace": NAMESPACE, "labels": labels}
    container = {
        "name": NAME,
        "image": image,
        "imagePullPolicy": "Never",  # imported into the node's containerd, never pulled
        "args": [
            f"--entryPoints.web.address=:{WEB_PORT}",
            f"--entryPoints.traefik.address=:{PING_PORT}",
            "--ping=true",
            "--providers.kubernetesingress=true",
            "--providers.kubernetesgateway=true",
            "--log.level=INFO",
            # Traefik would otherwise call home (update checks, usage statistics).
            "--global.checknewversion=false",
            "--global.sendanonymoususage=false",
        ],
        "ports": [{"name": "web", "containerPort": WEB_PORT, "hostPort": HOST_PORT, "protocol": "TCP"},
                  {"name": "ping", "containerPort": PING_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ping", "port": "ping"}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/ping", "port": "ping"}, "periodSeconds": 10},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, "labels": labels}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": f"{NAMESPACE}-{NAME}", "labels": labels}, "rules": rbac_rules()},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": f"{NAMESPACE}-{NAME}", "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"{NAMESPACE}-{NAME}"},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, **meta},
         "spec": {"replicas": 1, "strategy": {"type": "Recreate"},  # one hostPort: never two at once
                  "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"serviceAccountName": NAME, "containers": [container],
                                        "terminationGracePeriodSeconds": 5}}}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
         "metadata": {"name": CLASS, "labels": labels,
                      "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
         "spec": {"controller": INGRESS_CONTROLLER}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
         "metadata": {"name": CLASS, "labels": labels}, "spec": {"controllerName": GATEWAY_CONTROLLER}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": GATEWAY, **meta},
         "spec": {"gatewayClassName": CLASS,
                  "listeners": [{"name": "web", "protocol": "HTTP", "port": WEB_PORT,
                                 "allowedRoutes": {"namespaces": {"from": "All"}}}]}},
    ]


def install(plane, image: str, gateway_crds: Path, node_ip: str, timeout: float = 120.0) -> str:
    """Applies the Gateway API CRDs and Traefik; returns the URL the host reaches it at once it
    answers on the node's port 80."""
    # Server-side: the CRDs are too large for kubectl's last-applied annotation.
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(gateway_crds), timeout=120)
    plane.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    plane.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests(image)))
    url = f"http://{node_ip}:{HOST_PORT}"
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            # No route matches "/" yet: Traefik itself answers 404, which is what shows it serves.
            urllib.request.urlopen(url + "/", timeout=2)
            return url
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return url
            last = e
        except OSError as e:
            last = e
        time.sleep(0.5)
    pods = plane.kubectl("-n", NAMESPACE, "get", "pods", "-o", "wide", check=False).stdout
    raise ClusterError(f"Traefik did not answer at {url} within {timeout:.0f}s ({last}):\n{pods}")
