"""The Kubernetes source's routing table: Model events in, routing entries out."""

from __future__ import annotations

import pytest

from conch_gateway.errors import ConchError
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


def test_same_name_in_two_namespaces_is_served_qualified_and_the_bare_name_refused():
    registry = ModelRegistry()
    table = ModelTable(registry)
    table.replace([model("x", "late", created="2026-02-01T00:00:00Z"), model("x", "early")])
    assert [m.id for m in registry.all()] == ["early/x", "late/x"]
    assert registry.resolve("late/x", param="model").namespace == "late"
    with pytest.raises(ConchError) as refused:
        registry.resolve("x", param="model")
    assert refused.value.status == 409 and refused.value.code == "MODEL_AMBIGUOUS"
    assert refused.value.details == {"candidates": ["early/x", "late/x"]}
    # One namespace left: the bare name is that Model again, and its qualified id still works.
    table.delete(model("x", "early"))
    assert [m.id for m in registry.all()] == ["x"]
    assert registry.resolve("x").namespace == "late" and registry.resolve("late/x").id == "x"
    table.upsert(model("x", "other"))
    assert [m.id for m in registry.all()] == ["late/x", "other/x"]


def test_external_urls_outside_the_allowlist_are_never_routed():
    registry = ModelRegistry(external_allowlist=["http://t:8000"])
    table = ModelTable(registry)
    metadata = model("meta")
    metadata["spec"]["external"]["url"] = "http://169.254.169.254"
    metadata["status"]["endpoint"] = "http://169.254.169.254"
    table.replace([model("ok"), metadata])
    assert registry.resolve("ok").routable
    with pytest.raises(ConchError) as refused:
        registry.resolve("meta")
    assert refused.value.code == "MODEL_NOT_READY" and "CONCH_EXTERNAL_URL_ALLOWLIST" in refused.value.message
    # No allowlist: any host but link-local (cloud metadata).
    open_registry = ModelRegistry()
    ModelTable(open_registry).replace([model("ok"), metadata])
    assert open_registry.resolve("ok").routable and not open_registry.get("meta").routable


def test_not_ready_reasons_reach_clients_without_addresses():
    registry = ModelRegistry()
    broken = model("b", ready=False)
    broken["status"]["conditions"][0]["message"] = "Triton at http://10.1.2.3:8000 does not serve model 'b': HTTP 400"
    ModelTable(registry).replace([broken])
    assert registry.get("b").reason == "Triton at <address> does not serve model 'b': HTTP 400"


def test_objects_that_do_not_parse_are_skipped():
    registry = ModelRegistry()
    ModelTable(registry).replace([{"metadata": {"name": "broken"}, "spec": {"runtime": "warp-drive"}}, model("ok")])
    assert [m.id for m in registry.all()] == ["ok"]
