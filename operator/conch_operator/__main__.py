"""`python -m conch_operator`: run the operator against the current kubeconfig or in-cluster account."""

from __future__ import annotations

import argparse
import ctypes
import logging

import kopf

from . import handlers  # noqa: F401  (registers the handlers)
from .kube import load_config


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
    parser.add_argument("--peering", default=None, help="kopf peering name: one active operator among replicas")
    parser.add_argument("--liveness", default=None, help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one line per handler run is noise
    load_config()
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=args.peering is None,
        peering_name=args.peering,
        liveness_endpoint=args.liveness,
    )


if __name__ == "__main__":
    main()
