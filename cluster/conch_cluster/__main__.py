"""CLI: ``python -m conch_cluster {build,images,up,down,status} [--state-dir DIR]``.

``up`` leaves the plane running in the background and prints
``export KUBECONFIG=<path>`` as its last stdout line, so
``eval "$(python -m conch_cluster up --state-dir DIR)"`` works in shells and Makefiles.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

from . import stack, toolchain
from .controlplane import STATE_FILE, ControlPlane
from .nodes import DEFAULT_NODES, GPU_NODES
from .errors import ClusterError
from .processes import find_owned


def _default_state_dir() -> str:
    return os.environ.get("CONCH_STATE_DIR") or str(
        Path(tempfile.gettempdir()) / f"conch-cluster-{os.getuid()}"
    )


def _err(msg: str) -> None:
    print(f"[conch] {msg}", file=sys.stderr, flush=True)


def _attach(state_dir: Path) -> ControlPlane | None:
    if not (state_dir / STATE_FILE).exists():
        return None
    try:
        return ControlPlane.attach(state_dir)
    except (ClusterError, KeyError, TypeError) as e:
        # A half-written or foreign state file must not make `down` unusable.
        _err(f"ignoring unreadable state ({e})")
        return None


def _sweep(state_dir: Path) -> bool:
    """Stop a plane whose state file is gone: stop() finds its processes by their
    owner tag and its runtime dir via the kubeconfig link. True if anything was found."""
    found = bool(find_owned(str(state_dir.resolve()))) or (state_dir / "kubeconfig").is_symlink()
    ControlPlane(state_dir).stop()
    return found


def cmd_build(args) -> int:
    print(toolchain.build())
    return 0


def cmd_up(args) -> int:
    state_dir = Path(args.state_dir)
    existing = _attach(state_dir)
    if existing is not None:
        if existing.running():
            _err(f"already running ({existing.server})")
            print(f"export KUBECONFIG={shlex.quote(str(existing.kubeconfig))}")
            return 0
        _err("cleaning up a stale previous run")
        existing.stop()
    elif _sweep(state_dir):
        _err("cleaned up leftovers of a previous run")
    real_node = args.real_node or args.with_conch
    manifest = None
    if real_node:
        from . import images

        # A no-op when `make images` ran; --images: a manifest of images built before (e.g. by CI).
        manifest = json.loads(Path(args.images).read_text()) if args.images else images.ensure()
    cp = ControlPlane(
        state_dir,
        nodes=GPU_NODES if real_node else DEFAULT_NODES,
        build=not args.no_build,
        start_timeout=args.timeout,
        die_with_parent=False,  # the plane must outlive this launcher
        real_node=real_node,
        images=manifest,
    )
    cp.start()
    _err(f"cluster {cp.server} ready in {cp.startup_seconds:.1f}s; logs in {state_dir / 'logs'}")
    if real_node:
        _err(f"real node {cp.node.name} ({cp.network.node_ip}) Ready; ingress (Traefik) at {cp.ingress_url}")
    if args.with_conch:
        try:
            url = stack.up(state_dir, cp, manifest, args.gateway_port)
        except BaseException:
            stack.down(state_dir)
            cp.stop()
            raise
        _err(f"Conch installed by its chart (release {stack.RELEASE}, namespace {stack.NAMESPACE}, images "
             f"{manifest['tag']}); gateway at {url} (through the ingress)")
        if stack.admin_key(cp):
            _err(f"API key: kubectl -n {stack.NAMESPACE} get secret {stack.RELEASE}-admin-key "
                 "-o jsonpath='{.data.key}' | base64 -d")
        _err("next: kubectl apply -f examples/smollm2-cpu.yaml && kubectl get models -w")
    print(stack.export_line(cp))
    return 0


def cmd_down(args) -> int:
    state_dir = Path(args.state_dir)
    stack.down(state_dir)
    cp = _attach(state_dir)
    if cp is not None:
        cp.stop()
        _err("stopped")
    elif _sweep(state_dir):
        _err("stopped leftovers (state file was missing or unreadable)")
    else:
        _err("nothing to stop")
    return 0


def cmd_status(args) -> int:
    cp = _attach(Path(args.state_dir))
    if cp is None:
        print(json.dumps({"running": False}))
        return 1
    alive = {n: c.alive() for n, c in cp.components.items()}
    running = all(alive.values())
    print(
        json.dumps(
            {
                "running": running,
                "server": cp.server,
                "kubeconfig": str(cp.kubeconfig),
                "components": alive,
            },
            indent=2,
        )
    )
    return 0 if running else 1


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["images"]:
        from . import images

        try:
            return images.main(argv[1:])
        except ClusterError as e:
            _err(f"error: {e}")
            return 1
    parser = argparse.ArgumentParser(
        prog="python -m conch_cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build/cache the toolchain; prints the bin dir").set_defaults(
        func=cmd_build
    )
    sub.add_parser("images", help="build the container images here (make images); see `images --help`")
    for name, func, text in (
        ("up", cmd_up, "start in the background"),
        ("down", cmd_down, "stop and clean up (also after a crash)"),
        ("status", cmd_status, "exit 0 if every component is running"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "--state-dir",
            default=_default_state_dir(),
            help="logs + state.json (default: $CONCH_STATE_DIR or %(default)s)",
        )
        if name == "up":
            p.add_argument(
                "--timeout",
                type=float,
                default=120.0,
                help="seconds to wait for each readiness step",
            )
            p.add_argument(
                "--no-build", action="store_true", help="fail instead of building missing binaries"
            )
            p.add_argument(
                "--real-node",
                action="store_true",
                help="a real node (kubelet, containerd, kube-proxy, CoreDNS; needs root) and the Traefik "
                "ingress next to the fake GPU nodes, instead of fake CPU nodes",
            )
            p.add_argument(
                "--with-conch",
                action="store_true",
                help="--real-node, and Conch installed by its chart with the images built here; the gateway "
                "on 127.0.0.1:--gateway-port through the ingress (make cluster)",
            )
            p.add_argument("--gateway-port", type=int, default=8080, help="gateway port for --with-conch")
            p.add_argument("--images", default=os.environ.get("CONCH_IMAGES_MANIFEST"),
                           help="images.json of a previous `make images` to use instead of building the working "
                           "tree's (default: $CONCH_IMAGES_MANIFEST)")
        p.set_defaults(func=func)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ClusterError as e:
        _err(f"error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
