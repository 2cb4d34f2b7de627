"""The PrometheusRule copy of the API's alert rules, as an object (no I/O here; the API server's
side is tests/k8s/test_prometheus_rules.py)."""

from conch_gateway.monitoring.config import AlertRule
from conch_gateway.monitoring.prometheusrule import SOURCE_VERSION, Owner, PrometheusRuleCopy, spec_of

RULE = AlertRule.model_validate({"name": "High", "expr": "up == 0", "for": "5m", "severity": "critical",
                                 "summary": "down"})


def test_the_copy_holds_every_rule_is_labelled_stamped_and_owned_by_the_config_map():
    copy = PrometheusRuleCopy("ns", "conch-api-alerts", {"release": "kps"})
    current = {"metadata": {"name": "conch-api-alerts", "resourceVersion": "7", "labels": {"team": "x"},
                            "annotations": {"note": "kept", SOURCE_VERSION: "40"}, "managedFields": [{}]}}
    body = copy.body([RULE], Owner("conch-monitoring", "uid-1", "41"), current)
    meta = body["metadata"]
    assert (body["apiVersion"], body["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert meta["resourceVersion"] == "7"  # the write is made at the version read
    assert meta["labels"] == {"team": "x", "release": "kps"} and "managedFields" not in meta
    assert meta["annotations"] == {"note": "kept", SOURCE_VERSION: "41"}
    assert meta["ownerReferences"] == [{"apiVersion": "v1", "kind": "ConfigMap", "name": "conch-monitoring",
                                        "uid": "uid-1"}]
    assert body["spec"] == {"groups": [{"name": "conch-api", "rules": [
        {"alert": "High", "expr": "up == 0", "for": "5m", "labels": {"severity": "critical"},
         "annotations": {"summary": "down"}}]}]}
    assert copy.body([], Owner("c", "u", "1"), None)["metadata"]["namespace"] == "ns"


def test_no_rules_is_no_group():
    assert spec_of([]) == {"groups": []}
