"""`python -m conch_operator`: run the operator against the current kubeconfig or in-cluster account."""

from __future__ import annotations

import argparse
import ctypes
import http.server
import logging
import os
import threading
from urllib.parse import urlsplit

import kopf

from . import handlers  # noqa: F401  (registers the handlers)
from .kube import Kube, load_config
from .leader import ElectionConfig, LeaderElector


def _fewer_malloc_arenas() -> None:
    """glibc gives each thread its own malloc arena; with a thread pool of API calls that
    fragments into tens of MB of RSS that is never returned. Two arenas are plenty here.
    Must run before any thread starts."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def main(argv: list[str] | None = None) -> None:
    _fewer_malloc_arenas()
    parser = argparse.ArgumentParser(prog="python -m conch_operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    parser.add_argument("--leader-election", action="store_true",
                        help="reconcile only while holding a Lease, so several replicas can run (fail-over)")
    parser.add_argument("--leader-election-namespace", default=os.environ.get("POD_NAMESPACE"),
                        help="namespace of the Lease (default: $POD_NAMESPACE)")
    parser.add_argument("--leader-election-name", default="conch-operator", help="name of the Lease")
    parser.add_argument("--lease-duration", type=float, default=15.0,
                        help="seconds a silent leader keeps the Lease before a standby takes over")
    parser.add_argument("--peering", default=None, help="kopf peering name (kopf's own freeze protocol)")
    parser.add_argument("--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one line per handler run is noise
    load_config()
    elector = None
    if args.leader_election:
        if not args.leader_election_namespace:
            parser.error("--leader-election needs --leader-election-namespace or $POD_NAMESPACE")
        elector = LeaderElector(Kube(pool_size=2), ElectionConfig(namespace=args.leader_election_namespace,
                                                                  name=args.leader_election_name,
                                                                  lease_duration_s=args.lease_duration))
        with _standby_liveness(args.liveness):
            elector.wait_for_leadership()
        # Losing the Lease means another replica may already reconcile: stop at once, the pod restarts
        # as a standby.
        elector.keep_renewing(on_lost=lambda: os._exit(1))
    try:
        kopf.run(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=args.peering is None,
            peering_name=args.peering,
            liveness_endpoint=args.liveness,
        )
    finally:
        if elector:
            elector.release()


class _standby_liveness:
    """While waiting for the Lease, answer the liveness endpoint kopf will serve once leading:
    a standby is healthy, and must not be restarted for waiting."""

    def __init__(self, url: str | None):
        self._server = None
        if url:
            parts = urlsplit(url)
            self._server = http.server.ThreadingHTTPServer((parts.hostname or "0.0.0.0", parts.port or 80), _Alive)

    def __enter__(self) -> None:
        if self._server:
            threading.Thread(target=self._server.serve_forever, name="standby-liveness", daemon=True).start()

    def __exit__(self, *_) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()  # frees the port for kopf


class _Alive(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"standby": true}')

    def log_message(self, *_) -> None:
        pass  # probes every few seconds are noise


if __name__ == "__main__":
    main()
