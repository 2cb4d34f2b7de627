"""`make push REGISTRY=…`: the push commands for every image the chart takes from
`image.registry` (values.yaml), built from the images.json `make images` writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conch_cluster.errors import ClusterError
from conch_cluster.push import CHART_IMAGES, plan

REPO = Path(__file__).resolve().parents[3]
MANIFEST = {"tag": "0.1.0-abc", "version": "0.1.0", "images": {
    "conch-operator": {"ref": "ghcr.io/conch-dev/conch-operator:0.1.0-abc"},
    "conch-gateway": {"ref": "ghcr.io/conch-dev/conch-gateway:0.1.0-abc"},
    "triton-cpu": {"ref": "ghcr.io/conch-dev/triton-cpu:0.1.0-abc"},
    "pause": {"ref": "conch.local/pause:3.10"},
}}


def test_every_chart_image_is_tagged_and_pushed_under_both_tags():
    commands = plan(MANIFEST, "registry.example.com/conch/", {"trtllm-builder": "localhost/b:1"})
    assert all(c[0] == "push" for c in commands)  # pushed under the new name, no local tag added
    pushed = [c[-1] for c in commands]
    assert sorted(pushed) == sorted(f"docker://registry.example.com/conch/{n}:{t}" for n in CHART_IMAGES
                                    for t in ("0.1.0-abc", "0.1.0"))
    assert ["push", "--tls-verify=true", "localhost/b:1", "docker://registry.example.com/conch/trtllm-builder:0.1.0"] \
        in commands
    assert not any("pause" in c[-1] for c in commands)  # the local node's image stays local
    assert all(c[1] == "--tls-verify=true" for c in commands)


def test_insecure_registry_and_bad_registry():
    assert all(c[1] == "--tls-verify=false" for c in plan(MANIFEST, "127.0.0.1:5000/c", tls_verify=False))
    with pytest.raises(ClusterError):
        plan(MANIFEST, "https://registry.example.com")


def test_chart_images_are_the_ones_values_yaml_takes_from_image_registry():
    values = (REPO / "charts/conch/values.yaml").read_text()
    repositories = set(re.findall(r"^\s+repository: ([\w-]+)$", values, re.M))
    assert repositories == set(CHART_IMAGES)
