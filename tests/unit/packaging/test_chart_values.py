"""The chart's values: `helm lint --strict`, the values schema refusing bad input with the key's
path, and templates refusing combinations that cannot work."""

from __future__ import annotations

import json

import pytest

from support.chart import CHART, everything, namespaced


@pytest.mark.parametrize("values", [None, everything(), namespaced()], ids=["default", "everything", "namespaced"])
def test_lint_strict(helm, values):
    result = helm("lint", "--strict", str(CHART), *helm.values_file(values))
    assert "0 chart(s) failed" in result.stdout, result.stdout


@pytest.mark.parametrize("values, message", [
    ({"operator": {"replicas": "two"}}, "at '/operator/replicas': got string, want integer"),
    ({"gateway": {"replicas": "two"}}, "at '/gateway/replicas': got string, want integer"),
    ({"gateway": {"replicas": -1}}, "at '/gateway/replicas': minimum: got -1, want 0"),
    ({"gateway": {"service": {"type": "Ingress"}}}, "at '/gateway/service/type'"),
    ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy'"),
    ({"gateway": {"replica": 3}}, "additional properties 'replica' not allowed"),
    ({"crds": {"keep": "yes"}}, "at '/crds/keep': got string, want boolean"),
    ({"operator": {"watchNamespaces": ["Not_A_Namespace"]}}, "at '/operator/watchNamespaces/0'"),
    ({"operator": {"resources": {"requests": {"cpu": "lots"}}}}, "at '/operator/resources/requests/cpu'"),
    ({"gateway": {"resources": {"limits": None}}}, "at '/gateway/resources"),
    ({"monitoring": {"serviceMonitor": {"interval": "often"}}}, "at '/monitoring/serviceMonitor/interval'"),
], ids=lambda v: json.dumps(v) if isinstance(v, dict) else None)
def test_schema_rejects_bad_values(helm, values, message):
    result = helm.template(values, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize("values, message", [
    ({"operator": {"replicas": 2, "leaderElection": {"enabled": False}}},
     "operator.replicas > 1 needs operator.leaderElection.enabled=true"),
    ({"gateway": {"podDisruptionBudget": {"enabled": True, "maxUnavailable": 1}}},
     "set exactly one of minAvailable and maxUnavailable"),
    ({"gateway": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}},
     "minReplicas must not exceed gateway.autoscaling.maxReplicas"),
])
def test_templates_refuse_impossible_combinations(helm, values, message):
    result = helm.template(values, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr
