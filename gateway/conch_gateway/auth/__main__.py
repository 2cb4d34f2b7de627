"""`python -m conch_gateway.auth`: make credentials. The secret is printed once (to stderr); what is
kept — a Secret manifest for `kubectl apply -f -`, or an entry of the local keys file — holds only
its hash.

    python -m conch_gateway.auth key alice --models 'chat-*' --requests-per-minute 60 | kubectl apply -n conch -f -
    python -m conch_gateway.auth user bob --role admin < password.txt | kubectl apply -n conch -f -
    python -m conch_gateway.auth signing-key jwt-2026-06 | kubectl apply -n conch -f -
    python -m conch_gateway.auth key alice --format file >> keys.yaml    # local mode (CONCH_AUTH_KEYS_FILE)
"""

from __future__ import annotations

import argparse
import base64
import getpass
import secrets
import sys
from typing import Any

import yaml

from . import keys, passwords
from .credentials import LABEL


def _policy(args) -> tuple[dict[str, str], dict[str, Any]]:
    """The policy as annotations (Secret) and as file fields."""
    pairs = [("role", "role", args.role), ("models", "models", ",".join(args.models) if args.models else None),
             ("requests-per-minute", "requestsPerMinute", args.requests_per_minute),
             ("tokens-per-minute", "tokensPerMinute", args.tokens_per_minute),
             ("max-parallel", "maxParallel", args.max_parallel), ("expires", "expires", args.expires)]
    annotations = {f"conch.dev/{name}": str(value) for name, _, value in pairs if value is not None}
    fields = {field: (list(args.models) if field == "models" else value) for _, field, value in pairs
              if value is not None}
    return annotations, fields


def _secret(name: str, kind: str, data: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {LABEL: kind}}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "stringData": data}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conch_gateway.auth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for command in ("key", "user"):
        sub = commands.add_parser(command, help=f"a new {'API key' if command == 'key' else 'user (password on stdin)'}")
        sub.add_argument("name", help="Secret name (the key's name) or the username")
        sub.add_argument("--role", choices=["admin", "user"], default=None)
        sub.add_argument("--models", nargs="*", help="names or patterns (fnmatch) of the models allowed; default all")
        sub.add_argument("--requests-per-minute", type=int)
        sub.add_argument("--tokens-per-minute", type=int)
        sub.add_argument("--max-parallel", type=int)
        sub.add_argument("--expires", help="RFC 3339 time or a date (UTC)")
        sub.add_argument("--format", choices=["secret", "file"], default="secret")
    signing = commands.add_parser("signing-key", help="a new JWT signing key (the newest one signs)")
    signing.add_argument("name")
    signing.add_argument("--format", choices=["secret", "file"], default="secret")
    args = parser.parse_args(argv)

    if args.command == "key":
        new = keys.generate()
        annotations, fields = _policy(args)
        print(f"API key for {args.name} (shown once, keep it safe): {new.key}", file=sys.stderr)
        if args.format == "file":
            document = {"apiKeys": [{"name": args.name, "id": new.id, "sha256": new.sha256, **fields}]}
        else:
            document = _secret(args.name, "api-key", {"id": new.id, "sha256": new.sha256}, annotations)
    elif args.command == "user":
        password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("password: ")
        if len(password) < 12:
            parser.error("a password needs at least 12 characters")
        annotations, fields = _policy(args)
        digest = passwords.hash_password(password)
        if args.format == "file":
            document = {"users": [{"username": args.name, "passwordHash": digest, **fields}]}
        else:
            document = _secret(f"user-{args.name.lower()}", "user", {"username": args.name, "password-hash": digest},
                               annotations)
    else:
        material = base64.b64encode(secrets.token_bytes(32)).decode()
        if args.format == "file":
            document = {"signingKeys": [{"kid": args.name, "key": material}]}
        else:
            document = _secret(args.name, "signing-key", {}, {})
            document.pop("stringData")
            document["data"] = {"key": material}
    sys.stdout.write("---\n" + yaml.safe_dump(document, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
