"""The documentation cannot go stale silently: every relative link in README.md and docs/*.md
points at a file (and heading) that exists, and docs/operations.md lists exactly the environment
variables the code reads — every field of the pydantic Settings classes and every other `CONCH_*`
name in the product's source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conch_gateway.settings import Settings
from conch_operator.external import ExternalPolicy
from conch_operator.settings import OperatorSettings

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", REPO / "ARCHITECTURE.md", REPO / "charts/conch/README.md",
         *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading slugs: lower case, punctuation dropped, spaces to hyphens."""
    text = FENCE.sub("", page.read_text())
    slugs = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        slugs.add(slug)
    return slugs


def _links(page: Path) -> list[str]:
    return [t for t in LINK.findall(FENCE.sub("", page.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # http:, https:, mailto: are not checked here


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading #{anchor}")
    assert not broken, broken


def _documented() -> set[str]:
    text = (REPO / "docs/operations.md").read_text()
    section = text.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", section, re.M))


def _settings_names() -> set[str]:
    names = set()
    for cls in (Settings, OperatorSettings, ExternalPolicy):
        prefix = cls.model_config["env_prefix"]
        names |= {prefix + field.upper() for field in cls.model_fields}
    return names


def _source_names() -> set[str]:
    """`CONCH_*` literals read outside the Settings classes (e.g. by the embedded default)."""
    found = set()
    for package in ("gateway/conch_gateway", "engines/conch_engines", "operator/conch_operator"):
        for source in (REPO / package).rglob("*.py"):
            found |= set(re.findall(r"[\"'](CONCH_[A-Z0-9_]*[A-Z0-9])[\"']", source.read_text()))
    return found


def test_every_setting_is_documented_and_nothing_else():
    documented = _documented()
    assert _settings_names() <= documented, sorted(_settings_names() - documented)
    missing = {n for n in _source_names() if n not in documented and not n.endswith("_")}
    assert not missing, sorted(missing)
    conch = {n for n in documented if n.startswith("CONCH_")}
    stale = conch - _settings_names() - _source_names()
    assert not stale, f"documented but read nowhere: {sorted(stale)}"
