"""The report a failed `helm --wait` carries: which pods are shown with their logs."""

import json
import subprocess

from conch_cluster.diagnostics import pod_report


def _pod(name: str, phase: str, ready: str | None) -> dict:
    conditions = [] if ready is None else [{"type": "Ready", "status": ready}]
    return {"metadata": {"name": name, "namespace": "conch"}, "status": {"phase": phase, "conditions": conditions}}


class RecordingKubectl:
    def __init__(self, pods: list[dict], fail_events: bool = False):
        self.pods, self.fail_events, self.calls = pods, fail_events, []

    def __call__(self, *args, check=True, timeout=None):
        self.calls.append(args)
        if args[:2] == ("get", "events") and self.fail_events:
            raise subprocess.TimeoutExpired("kubectl", timeout)
        if args[:2] == ("get", "pods") and "json" in args:
            out = json.dumps({"items": self.pods})
        elif args[0] == "logs":
            out = f"log of {args[3]}"
        else:
            out = f"output of {' '.join(args[:2])}"
        return subprocess.CompletedProcess(args, 0, out, "")


def test_logs_are_fetched_only_for_pods_that_are_not_ready():
    kubectl = RecordingKubectl([_pod("ready", "Running", "True"), _pod("crashing", "Running", "False"),
                                _pod("pending", "Pending", None), _pod("job", "Succeeded", "False")])
    report = pod_report(kubectl, "conch")
    logged = {call[3] for call in kubectl.calls if call[0] == "logs"}
    assert logged == {"crashing", "pending"}
    assert "log of crashing" in report and "kubectl logs conch/pending --previous" in report
    assert all("-n" in call and "conch" in call for call in kubectl.calls)


def test_a_failing_kubectl_does_not_hide_the_rest_of_the_report():
    kubectl = RecordingKubectl([_pod("crashing", "Running", "False")], fail_events=True)
    report = pod_report(kubectl)
    assert "get events" in report and "log of crashing" in report
    assert ("get", "pods", "-A", "-o", "wide") in kubectl.calls
