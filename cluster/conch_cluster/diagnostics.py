"""What to print when pods do not become ready: a `helm --wait` that times out says only "context
deadline exceeded", so the caller adds the pods, their recent events and the logs of the ones that
are not ready — enough to tell a crash from a pending pod from a slow start without a second run."""

from __future__ import annotations

import json
import subprocess
from typing import Callable

Kubectl = Callable[..., subprocess.CompletedProcess]


def _not_ready(pod: dict) -> bool:
    conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return pod.get("status", {}).get("phase") != "Succeeded" and conditions.get("Ready") != "True"


def pod_report(kubectl: Kubectl, namespace: str | None = None, log_lines: int = 40) -> str:
    """Pods (wide), the last events and the tail of every not-ready pod's containers (current and
    previous run). Never raises: it runs when something has already gone wrong."""
    scope = ["-n", namespace] if namespace else ["-A"]
    parts: list[str] = []

    def run(*args: str) -> str:
        try:
            proc = kubectl(*args, check=False, timeout=30)
        except (subprocess.SubprocessError, OSError) as exc:
            return f"(kubectl {' '.join(args)}: {exc})"
        return (proc.stdout + proc.stderr).strip()

    parts.append("$ kubectl get pods -o wide\n" + run("get", "pods", *scope, "-o", "wide"))
    events = run("get", "events", *scope, "--sort-by=.lastTimestamp").splitlines()
    parts.append("$ kubectl get events (last 30)\n" + "\n".join(events[:1] + events[-30:]))
    try:
        pods = json.loads(run("get", "pods", *scope, "-o", "json")).get("items", [])
    except ValueError:
        pods = []
    for pod in filter(_not_ready, pods):
        name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
        for previous in (False, True):
            flag = ["--previous"] if previous else []
            text = run("logs", "-n", ns, name, "--all-containers", f"--tail={log_lines}", *flag)
            if text:
                parts.append(f"$ kubectl logs {ns}/{name}{' --previous' if previous else ''}\n{text}")
    return "\n\n".join(parts)


def host_report(lines: int = 15) -> str:
    """The busiest processes of this machine: pods that start too slowly on a local node are often
    starved by something else (a leftover server of an earlier test, a build)."""
    try:
        proc = subprocess.run(["ps", "-eo", "pid,pcpu,rss,etimes,args", "--sort=-pcpu"], capture_output=True,
                              text=True, timeout=10)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"(ps: {exc})"
    return "$ ps (busiest)\n" + "\n".join(line[:200] for line in proc.stdout.splitlines()[:lines + 1])
