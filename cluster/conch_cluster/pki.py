"""Throw-away PKI for one control plane: a CA, the apiserver serving cert, client certs
and the service-account signing key.

ECDSA P-256 everywhere: key generation is ~100x faster than RSA-2048 and every component
(Go TLS, service-account JWTs as ES256) accepts it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .nodeconfig import NODE_NAME


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: CertPair
    apiserver: CertPair
    loopback: CertPair  # serving cert for KCM/scheduler health endpoints on 127.0.0.1
    front_proxy_ca: CertPair  # request-header (aggregation) CA, separate as in kubeadm
    front_proxy_client: CertPair
    sa_key: Path
    sa_pub: Path
    clients: dict[str, CertPair]  # by CLIENTS key


# user name and groups per client cert; RBAC bootstraps roles for the system users (the Node
# authorizer the kubelet's; node.py creates CoreDNS's).
CLIENTS = {
    "admin": ("conch-admin", ["system:masters"]),
    "kube-controller-manager": ("system:kube-controller-manager", []),
    "kube-scheduler": ("system:kube-scheduler", []),
    # a real node's (node.py)
    "kubelet": (f"system:node:{NODE_NAME}", ["system:nodes"]),
    "kube-proxy": ("system:kube-proxy", []),
    "coredns": ("system:coredns", []),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ["system:masters"]),
}


FRONT_PROXY_CLIENT = "front-proxy-client"


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(cn: str, orgs: list[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    return x509.Name(attrs + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject, key, issuer, issuer_key, *, ca=False, san=None, eku=None):
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Back-dated so small clock differences between components do not matter.
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not ca,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def generate(directory: Path, ip_sans: list[str], dns_sans: list[str]) -> Pki:
    """Write all keys and certs into ``directory`` (created 0700)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def save(stem: str, cert: x509.Certificate, key) -> CertPair:
        pair = CertPair(directory / f"{stem}.crt", directory / f"{stem}.key")
        _write(pair.cert, cert.public_bytes(serialization.Encoding.PEM))
        _write(pair.key, _key_pem(key))
        return pair

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("conch-ca")
    ca_cert = _issue(ca_name, ca_key, ca_name, ca_key, ca=True)
    ca = save("ca", ca_cert, ca_key)

    fp_key = ec.generate_private_key(ec.SECP256R1())
    fp_name = _name("conch-front-proxy-ca")
    front_proxy_ca = save(
        "front-proxy-ca", _issue(fp_name, fp_key, fp_name, fp_key, ca=True), fp_key
    )

    def leaf(stem: str, cn: str, orgs=(), san=None, eku=None, issuer=(ca_name, ca_key)) -> CertPair:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(_name(cn, list(orgs)), key, *issuer, san=san, eku=eku)
        return save(stem, cert, key)

    san = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_sans]
    san += [x509.DNSName(d) for d in dns_sans]
    apiserver = leaf("apiserver", "kube-apiserver", san=san, eku=[ExtendedKeyUsageOID.SERVER_AUTH])

    loopback = leaf(
        "loopback",
        "conch-loopback",
        san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
        eku=[ExtendedKeyUsageOID.SERVER_AUTH],
    )

    front_proxy_client = leaf(
        "front-proxy-client",
        FRONT_PROXY_CLIENT,
        eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
        issuer=(fp_name, fp_key),
    )

    clients = {
        stem: leaf(stem, cn, orgs, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
        for stem, (cn, orgs) in CLIENTS.items()
    }

    sa = ec.generate_private_key(ec.SECP256R1())
    sa_key, sa_pub = directory / "sa.key", directory / "sa.pub"
    _write(sa_key, _key_pem(sa))
    _write(
        sa_pub,
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return Pki(
        ca=ca,
        apiserver=apiserver,
        loopback=loopback,
        front_proxy_ca=front_proxy_ca,
        front_proxy_client=front_proxy_client,
        sa_key=sa_key,
        sa_pub=sa_pub,
        clients=clients,
    )
