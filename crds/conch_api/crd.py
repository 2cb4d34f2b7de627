"""The Model CustomResourceDefinition, generated from the pydantic types in `model.py`.

    python -m conch_api.crd > crds/conch.dev_models.yaml

pydantic's JSON Schema is turned into a Kubernetes *structural* schema: `$ref`s inlined,
`Optional` unwrapped (absence means unset), titles dropped, `additionalProperties: false`
dropped (the API server prunes or, with kubectl's strict field validation, rejects unknown
fields), and the CEL rules carried over as `x-kubernetes-validations`.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from .model import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION, ModelSpec, ModelStatus

NAME_RULE = {
    "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 50",
    "message": "a Model name must be a DNS-1035 label of at most 50 characters (it names the Model's Service)",
}

PRINTER_COLUMNS = [
    {"name": "Runtime", "type": "string", "jsonPath": ".spec.runtime"},
    {"name": "Quantization", "type": "string", "jsonPath": ".spec.quantization"},
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
    {"name": "Desired", "type": "integer", "jsonPath": ".spec.replicas"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint", "priority": 0},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    schema = dict(schema)
    if "$ref" in schema:
        target = defs[schema.pop("$ref").split("/")[-1]]
        schema = {**target, **schema}  # the field's description and default win over the type's
    if "anyOf" in schema:
        options = [s for s in schema.pop("anyOf") if s.get("type") != "null"]
        if schema.get("x-kubernetes-int-or-string"):
            options = []
        elif len(options) == 1:
            schema = {**structural(options[0], defs), **schema}
        elif options:
            raise ValueError(f"cannot express a union in a structural schema: {options}")
    schema.pop("title", None)
    if schema.get("default", 0) is None:
        schema.pop("default")
    if schema.get("additionalProperties") is False:
        schema.pop("additionalProperties")
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
        schema.setdefault("type", "string")
    if "properties" in schema:
        schema["type"] = "object"
        schema["properties"] = {k: structural(v, defs) for k, v in schema["properties"].items()}
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = structural(schema["additionalProperties"], defs)
    if "items" in schema:
        schema["items"] = structural(schema["items"], defs)
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        schema["type"] = "object"
        schema.pop("additionalProperties", None)
    return schema


def _schema_of(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(mode="validation")
    return structural(raw, raw.get("$defs", {}))


def crd() -> dict[str, Any]:
    spec_schema = _schema_of(ModelSpec)
    spec_schema.pop("$defs", None)
    status_schema = _schema_of(ModelStatus)
    status_schema.pop("$defs", None)
    status_schema.pop("required", None)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "plural": PLURAL, "singular": SINGULAR, "shortNames": list(SHORT_NAMES),
                      "listKind": f"{KIND}List", "categories": ["conch"]},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A quantized LLM served by Triton Inference Server, reconciled by the Conch operator.",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec_schema,
                        "status": status_schema,
                    },
                    "x-kubernetes-validations": [NAME_RULE],
                }},
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                              "labelSelectorPath": ".status.selector"},
                },
                "additionalPrinterColumns": PRINTER_COLUMNS,
            }],
        },
    }


def render() -> str:
    header = "# Generated by `python -m conch_api.crd` from crds/conch_api/model.py. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)


if __name__ == "__main__":
    sys.stdout.write(render())
