"""The API reference pages work offline: a real headless Chromium renders the gateway's /docs from
loopback alone — every asset the page names is the gateway's own — and the rendered page lists
the API's operations."""

from __future__ import annotations

import re
import shutil
import subprocess
from urllib.parse import urljoin, urlparse

import pytest

pytestmark = pytest.mark.triton

CHROMIUM = shutil.which("chromium")


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_assets_are_all_served_by_the_gateway(client, gateway, path):
    page = client.get(path)
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text) + re.findall(r"url: ?'([^']+)'", page.text)
    assert urls
    for url in urls:
        absolute = urljoin(gateway.url + path, url)
        assert urlparse(absolute).hostname == "127.0.0.1", url
        assert client.get(absolute).status_code == 200, url


ASSET = re.compile(r"""<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)=["'](https?://[^"']+)["']""")


def loaded(dom: str) -> list[str]:
    """Absolute addresses of what the page loads (scripts, stylesheets, images), not its links."""
    return ASSET.findall(dom)


def render(url: str, profile) -> str:
    # `make test` installs Debian's chromium (Makefile APT_PACKAGES): its absence is a failure, not a skip
    assert CHROMIUM is not None, "chromium is missing: run `make system-packages`"
    # --virtual-time-budget lets the page's scripts run (fetch /openapi.json, render) before the dump
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=True).stdout


def test_headless_chromium_renders_the_operations(gateway, tmp_path):
    dom = render(f"{gateway.url}/docs", tmp_path)
    assert 'class="swagger-ui"' in dom
    assert "/v1/chat/completions" in dom and "/v1/generate" in dom and "opblock" in dom
    # every script, stylesheet and image the rendered page loads is the gateway's own (links are not loads)
    for url in loaded(dom):
        assert urlparse(url).hostname in ("127.0.0.1", "localhost"), url


def test_headless_chromium_renders_redoc(gateway, tmp_path):
    dom = render(f"{gateway.url}/redoc", tmp_path)
    assert "redoc-wrap" in dom or "api-content" in dom
    assert "/v1/chat/completions" in dom
    for url in loaded(dom):
        assert urlparse(url).hostname in ("127.0.0.1", "localhost"), url
