"""The README and docs/ point only at files that exist, and every example is mentioned."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_PATH = re.compile(r"(?<![\w/.])((?:examples|bench|docs|tests|engine|gateway|grammars|proto|deploy)/[\w./-]+\w)")
_LINK = re.compile(r"\]\(([^)#:]+)\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_paths_and_links_exist(doc: Path) -> None:
    text = doc.read_text()
    missing = [p for p in _PATH.findall(text) if not (REPO / p).exists()]
    missing += [link for link in _LINK.findall(text) if not (doc.parent / link).exists()]
    assert not missing, f"{doc.name} names missing files: {missing}"


def test_every_example_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    examples = [p for p in (REPO / "examples").iterdir() if p.suffix in (".py", ".sh", ".yaml", ".json")]
    helpers = {"units.py"}  # shared by the examples, not one itself
    unmentioned = [p.name for p in examples if p.name not in helpers and f"examples/{p.name}" not in readme]
    assert not unmentioned, f"examples the README does not mention: {unmentioned}"
