"""The chart's RBAC: least privilege (no wildcards, no escalation), exactly the rules the operator
and the gateway use, cluster-wide or confined to named namespaces."""

from __future__ import annotations

from support.chart import everything, find, namespaced, one


def rules_of(role: dict) -> dict[tuple[str, str, tuple[str, ...]], set[str]]:
    """(apiGroup, resource, resourceNames) → verbs."""
    out: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource, tuple(rule.get("resourceNames", ())))
                out.setdefault(key, set()).update(rule["verbs"])
    return out


OPERATOR_NAMESPACED_RULES = {
    ("conch.dev", "models", ()): {"get", "list", "watch"},
    ("conch.dev", "models/status", ()): {"patch"},
    ("apps", "deployments", ()): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "configmaps", ()): {"list", "create", "patch", "delete"},
    ("", "configmaps", ("conch-engines",)): {"get"},
    ("", "services", ()): {"list", "create", "patch", "delete"},
    ("batch", "jobs", ()): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "pods", ()): {"list", "watch"},
    ("", "persistentvolumeclaims", ()): {"get", "create"},
    ("", "secrets", ()): {"get"},
    ("", "events", ()): {"create"},
}
CRD_WATCH = {("apiextensions.k8s.io", "customresourcedefinitions", ()): {"list", "watch"}}


def test_rbac_is_least_privilege(helm):
    default = helm.render()
    peering = helm.render({"operator": {"peering": {"enabled": True}}})
    confined = helm.render(namespaced("models"))
    for docs in (default, peering, confined, helm.render(everything())):
        for role in find(docs, "ClusterRole") + find(docs, "Role"):
            for rule in role["rules"]:
                for field in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule[field], f"wildcard {field} in {role['kind']}/{role['metadata']['name']}"
                assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])

    assert rules_of(one(default, "ClusterRole", "conch-operator")) == {**CRD_WATCH, **OPERATOR_NAMESPACED_RULES}
    assert rules_of(one(peering, "ClusterRole", "conch-operator")) == {
        **CRD_WATCH, **OPERATOR_NAMESPACED_RULES,
        ("kopf.dev", "clusterkopfpeerings", ()): {"list", "watch"},
        ("kopf.dev", "clusterkopfpeerings", ("conch",)): {"patch"}}
    assert one(peering, "ClusterKopfPeering", "conch")

    # Confined to one namespace: the operator's work in a Role there; cluster-wide only reads.
    assert rules_of(one(confined, "ClusterRole", "conch-operator")) == {
        **CRD_WATCH, ("", "namespaces", ()): {"list", "watch"}}
    role = one(confined, "Role", "conch-operator")
    assert role["metadata"]["namespace"] == "models"
    assert rules_of(role) == {**OPERATOR_NAMESPACED_RULES, ("kopf.dev", "kopfpeerings", ()): {"list", "watch"},
                              ("kopf.dev", "kopfpeerings", ("conch",)): {"patch"}}
    assert one(confined, "KopfPeering", "conch")["metadata"]["namespace"] == "models"
    assert one(confined, "RoleBinding", "conch-operator")["subjects"] == [
        {"kind": "ServiceAccount", "name": "conch-operator", "namespace": "conch"}]

    # The gateway only reads Models.
    assert rules_of(one(default, "ClusterRole", "conch-gateway")) == {("conch.dev", "models", ()): {"get", "list", "watch"}}
    gateway_role = one(confined, "Role", "conch-gateway")
    assert gateway_role["metadata"]["namespace"] == "models" and not find(confined, "ClusterRole", "conch-gateway")
    assert rules_of(gateway_role) == {("conch.dev", "models", ()): {"get", "list", "watch"}}
    # …and reads Nodes' GPU capacity for /api/system/gpu: nodes are cluster-scoped, so a ClusterRole even when confined.
    for docs in (default, confined):
        assert rules_of(one(docs, "ClusterRole", "conch-gateway-nodes")) == {("", "nodes", ()): {"get", "list"}}


def test_rbac_covers_what_the_operator_code_touches(helm):
    """Every kind the operator's one door to the API knows (kube._RESOURCES) has a rule, and every
    kind it owns (kube.OWNED_KINDS) can be created, applied, listed and pruned."""
    from conch_operator import kube

    docs = helm.render()
    rules = rules_of(one(docs, "ClusterRole", "conch-operator"))
    # The Lease of leader election: a Role in the release namespace, for that one Lease.
    election = rules_of(one(docs, "Role", "conch-operator-leader-election"))
    assert election == {("coordination.k8s.io", "leases", ()): {"create"},
                        ("coordination.k8s.io", "leases", ("conch-operator",)): {"get", "update"}}
    for kind, (prefix, plural) in kube._RESOURCES.items():
        group = "" if prefix == "/api/v1" else prefix.split("/")[2]
        if kind == "Lease":
            continue
        assert any(r[:2] == (group, plural) for r in rules), f"no rule for {kind} ({group}/{plural})"
        if kind in kube.OWNED_KINDS:
            assert {"create", "patch", "list", "delete"} <= rules[(group, plural, ())], kind
