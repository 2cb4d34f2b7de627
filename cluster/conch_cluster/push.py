"""``make push REGISTRY=…`` (``python -m conch_cluster.push --registry …``): pushes every Conch image
``make images`` built (gateway, operator, CPU Triton; see images.json) as
``<registry>/<name>:<tag>`` and ``<registry>/<name>:<version>`` (no local tags are added), so that
``helm install … --set image.registry=<registry>`` finds each one. The node's own images (pause,
Traefik) are for the local cluster only and are not pushed.

The TensorRT-LLM builder image (docker/trtllm-builder.Dockerfile) stands on NVIDIA's CUDA base and
is not built by ``make images``: build it with ``--image trtllm-builder=<local ref>`` once you have
it, and it is pushed with the others.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import ClusterError
from .images import CONCH_IMAGES, manifest_path, podman

# Images the chart takes from `image.registry` (values.yaml): the ones make images builds, plus
# the TensorRT-LLM engine builder.
CHART_IMAGES = tuple(image.name for image in CONCH_IMAGES) + ("trtllm-builder",)


def plan(manifest: dict, registry: str, extra: dict[str, str] | None = None,
         tls_verify: bool = True) -> list[list[str]]:
    """The podman commands (without podman's own global flags) that push every chart image
    in ``manifest`` (plus ``extra``: name → local ref) to ``registry``. Pure: tested as a unit."""
    registry = registry.rstrip("/")
    if not registry or "://" in registry:
        raise ClusterError(f"REGISTRY must look like host[:port]/path, not {registry!r}")
    sources = {name: entry["ref"] for name, entry in manifest["images"].items() if name in CHART_IMAGES}
    sources.update(extra or {})
    commands = []
    for name, source in sources.items():
        for tag in dict.fromkeys((manifest["tag"], manifest["version"])):
            target = f"{registry}/{name}:{tag}"
            # `podman push SOURCE DEST` names the pushed copy without adding a local tag.
            commands.append(["push", f"--tls-verify={'true' if tls_verify else 'false'}", source, f"docker://{target}"])
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conch_cluster.push", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", required=True, help="e.g. registry.example.com/conch")
    parser.add_argument("--manifest", type=Path, default=None, help="images.json of make images")
    parser.add_argument("--image", action="append", default=[], metavar="NAME=REF",
                        help="push another local image too, e.g. trtllm-builder=localhost/trtllm-builder:1")
    parser.add_argument("--insecure", action="store_true", help="plain HTTP / unverified TLS (a local test registry)")
    parser.add_argument("--dry-run", action="store_true", help="print the podman commands only")
    args = parser.parse_args(argv)
    path = args.manifest or manifest_path()
    try:
        manifest = json.loads(path.read_text())
        extra = dict(item.split("=", 1) for item in args.image)
        commands = plan(manifest, args.registry, extra, tls_verify=not args.insecure)
        for command in commands:
            print("podman " + " ".join(command), file=sys.stderr)
            if not args.dry_run:
                podman(*command, capture=True, timeout=3600)
    except FileNotFoundError:
        print(f"error: {path} is missing: run `make images` first", file=sys.stderr)
        return 1
    except (ClusterError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    pushed = sorted(c[-1].removeprefix("docker://") for c in commands)
    print("\n".join(pushed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
