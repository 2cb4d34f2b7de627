"""The CRDs the chart ships: the Model CRD identical to the generated one (kept on uninstall by
default), and kopf's peering CRDs in crds/."""

from __future__ import annotations

import yaml

from support.chart import CHART, CRD_FILE, find, one


def test_chart_crd_is_the_generated_crd(helm):
    """The chart reads files/conch.dev_models.yaml; it must stay byte-for-byte crds/conch.dev_models.yaml."""
    assert (CHART / "files" / "conch.dev_models.yaml").read_bytes() == CRD_FILE.read_bytes(), \
        "run: cp crds/conch.dev_models.yaml charts/conch/files/conch.dev_models.yaml"
    generated = yaml.safe_load(CRD_FILE.read_text())
    rendered = one(helm.render(), "CustomResourceDefinition", "models.conch.dev")
    meta = rendered["metadata"]
    assert meta.pop("annotations") == {"helm.sh/resource-policy": "keep"}
    assert meta.pop("labels")["app.kubernetes.io/managed-by"] == "Helm"
    assert rendered == generated

    not_kept = one(helm.render({"crds": {"keep": False}}), "CustomResourceDefinition", "models.conch.dev")
    assert "annotations" not in not_kept["metadata"]
    assert not find(helm.render({"crds": {"install": False}}), "CustomResourceDefinition")


def test_kopf_peering_crds_ship_in_crds_dir():
    crds = {d["metadata"]["name"]: d for d in yaml.safe_load_all((CHART / "crds" / "kopf-peering.yaml").read_text())}
    assert set(crds) == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    assert crds["clusterkopfpeerings.kopf.dev"]["spec"]["scope"] == "Cluster"
    assert crds["kopfpeerings.kopf.dev"]["spec"]["scope"] == "Namespaced"
    # What kopf looks the peering resources up by (kopf._cogs.structs.references).
    from kopf._cogs.structs import references

    for selector, crd in ((references.CLUSTER_PEERINGS_K, crds["clusterkopfpeerings.kopf.dev"]),
                          (references.NAMESPACED_PEERINGS_K, crds["kopfpeerings.kopf.dev"])):
        assert (selector.group, selector.version, selector.any_name) == \
            (crd["spec"]["group"], crd["spec"]["versions"][0]["name"], crd["spec"]["names"]["plural"])
