"""Write kubeconfigs with embedded credentials, and build TLS contexts from them."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from pathlib import Path

import yaml

from .pki import CertPair


def write(path: Path, server: str, ca: Path, client: CertPair) -> Path:
    """Self-contained kubeconfig (mode 0600): usable after copying, by any client."""

    def b64(f: Path) -> str:
        return base64.b64encode(f.read_bytes()).decode()

    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "conch", "cluster": {"server": server, "certificate-authority-data": b64(ca)}}
        ],
        "users": [
            {
                "name": "conch",
                "user": {
                    "client-certificate-data": b64(client.cert),
                    "client-key-data": b64(client.key),
                },
            }
        ],
        "contexts": [{"name": "conch", "context": {"cluster": "conch", "user": "conch"}}],
        "current-context": "conch",
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    return path


def ssl_context(path: Path) -> ssl.SSLContext:
    """Client TLS context (CA + client cert) for the kubeconfig's first cluster/user."""
    cfg = yaml.safe_load(path.read_text())
    cluster, user = cfg["clusters"][0]["cluster"], cfg["users"][0]["user"]
    ctx = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    # load_cert_chain only takes files; the kubeconfig's own dir is private (tmpfs, 0700).
    with tempfile.TemporaryDirectory(dir=path.parent) as d:
        crt, key = Path(d) / "c.crt", Path(d) / "c.key"
        crt.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        ctx.load_cert_chain(str(crt), str(key))
    return ctx
