"""The Kubernetes source's routing table: Model events in, routing entries out."""

from __future__ import annotations

from conch_gateway.registry.base import ModelRegistry
from conch_gateway.registry.kubernetes import ModelTable


def model(name, namespace="ns", ready=True, created="2026-01-01T00:00:00Z", **spec):
    return {
        "apiVersion": "conch.dev/v1alpha1", "kind": "Model",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": {"runtime": "external", "external": {"url": "http://t:8000", "tritonModel": name}, **spec},
        "status": {"phase": "Ready" if ready else "Deploying",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                   "reason": "R", "message": "" if ready else "0/1 replicas ready"}],
                   "endpoint": "http://t:8000", "tritonModel": name, "interface": "ensemble"},
    }


def test_events_update_the_registry():
    registry = ModelRegistry()
    table = ModelTable(registry)
    table.replace([model("a"), model("b", ready=False)])
    assert [m.id for m in registry.all()] == ["a", "b"]
    assert registry.get("a").routable and not registry.get("b").routable
    assert registry.get("b").reason == "0/1 replicas ready"
    table.upsert(model("b"))
    assert registry.get("b").routable
    table.delete(model("a"))
    assert registry.get("a") is None


def test_same_name_in_two_namespaces_serves_the_older():
    registry = ModelRegistry()
    table = ModelTable(registry)
    table.replace([model("x", "late", created="2026-02-01T00:00:00Z"), model("x", "early")])
    assert registry.get("x").namespace == "early"
    table.delete(model("x", "early"))
    assert registry.get("x").namespace == "late"


def test_objects_that_do_not_parse_are_skipped():
    registry = ModelRegistry()
    ModelTable(registry).replace([{"metadata": {"name": "broken"}, "spec": {"runtime": "warp-drive"}}, model("ok")])
    assert [m.id for m in registry.all()] == ["ok"]
