"""The CRD YAML is generated from the shared pydantic types and stays in sync with them."""

from __future__ import annotations

import yaml

from conch_api import crd
from support import REPO_ROOT

COMMITTED = REPO_ROOT / "crds" / "conch.dev_models.yaml"


def test_committed_crd_matches_the_python_types():
    assert COMMITTED.read_text() == crd.render(), "run: python -m conch_api.crd > crds/conch.dev_models.yaml"


def _walk(schema, path="spec"):
    yield path, schema
    for name, child in (schema.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")


def schema():
    return yaml.safe_load(COMMITTED.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_every_spec_and_status_field_is_described():
    for root in ("spec", "status"):
        missing = [path for path, node in _walk(schema()["properties"][root], root) if not node.get("description")]
        assert not missing, f"fields without a description (kubectl explain shows nothing): {missing}"


def test_schema_is_structural():
    for path, node in _walk(schema()["properties"]["spec"]):
        assert "$ref" not in node and "anyOf" not in node and "title" not in node, path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path


def test_scale_subresource_and_columns():
    version = yaml.safe_load(COMMITTED.read_text())["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {"specReplicasPath": ".spec.replicas",
                                                "statusReplicasPath": ".status.replicas",
                                                "labelSelectorPath": ".status.selector"}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Runtime", "Quantization", "Ready", "Desired", "Phase", "Endpoint", "Age"]
