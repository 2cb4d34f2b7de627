"""Where an `external` Model may send the operator's probe and the gateway's requests: an allowlist,
no link-local addresses without one, and no redirects followed — against real HTTP servers on
loopback (a fake "Triton" that redirects, and the "internal" address it redirects to)."""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from conch_gateway.backends.triton import TritonClient
from conch_operator import external


class Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.hits: list[str] = []
        self.httpd.hits = self.hits  # type: ignore[attr-defined]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Internal(BaseHTTPRequestHandler):
    """Stands for an address the Model author may not reach: every hit is recorded."""

    def do_GET(self):
        self.server.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def internal() -> Iterator[Server]:
    server = Server(Internal)
    yield server
    server.close()


@pytest.fixture
def redirector(internal) -> Iterator[Server]:
    target = internal.url

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self):
            self.server.hits.append(self.path)
            self.send_response(302)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = Server(Redirect)
    yield server
    server.close()


def test_the_operator_probe_follows_no_redirect(redirector, internal):
    ready, message = external.probe(redirector.url, "m", timeout=2, allowlist=[])
    assert not ready and "HTTP 302 (redirects are not followed)" in message
    assert redirector.hits == ["/v2/health/ready"] and internal.hits == []
    # The internal server itself would answer ready: only the redirect was refused.
    assert external.probe(internal.url, "m", timeout=2, allowlist=[])[0]


def test_the_operator_probes_only_allowed_urls(internal):
    ready, message = external.probe(internal.url, "m", timeout=2, allowlist=["http://triton.infra:8000"])
    assert not ready and "allowlist" in message and internal.hits == []
    ready, _ = external.probe(internal.url, "m", timeout=2, allowlist=[f"http://127.0.0.1:{internal.httpd.server_port}"])
    assert ready
    ready, message = external.probe("http://169.254.169.254", "m", timeout=2, allowlist=[])
    assert not ready and "allowlist" in message  # link-local (cloud metadata): never without an explicit pattern


def test_the_gateway_readiness_check_follows_no_redirect(redirector, internal):
    async def check() -> tuple[bool, bool]:
        client = TritonClient()
        try:
            return await client.model_ready(redirector.url, "m"), await client.model_ready(internal.url, "m")
        finally:
            await client.close()

    through_redirect, direct = asyncio.run(check())
    assert not through_redirect and direct
    assert internal.hits == ["/v2/models/m/ready"]  # only the direct check reached it
