"""The documentation site: every nav page exists, the schema page is the SPEC's text, and
`mkdocs build --strict` passes (the docs are in the test extra, so CI builds them)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared" / "SPEC.md"


def _nav_pages(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [p for item in node for p in _nav_pages(item)]
    if isinstance(node, dict):
        return [p for value in node.values() for p in _nav_pages(value)]
    return []


def _config() -> dict:
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.SafeLoader)


def test_every_nav_page_exists() -> None:
    pages = _nav_pages(_config()["nav"])
    missing = [p for p in pages if not (ROOT / "docs" / p).is_file()]
    assert not missing, f"mkdocs.yml names pages that docs/ lacks: {missing}"
    for verb in ("ingest", "info", "analyze", "report", "export", "sweep", "demo"):
        assert f"guide/{verb}.md" in pages


@pytest.mark.skipif(not SPEC.is_file(), reason="../shared/SPEC.md is not beside this checkout")
def test_schema_page_is_the_spec() -> None:
    spec = SPEC.read_text()
    body = spec[spec.index("## 1. Activation store"):]
    assert body in (ROOT / "docs" / "schema.md").read_text(), "docs/schema.md differs from SPEC.md: copy it again"


@pytest.mark.slow
def test_site_builds_strictly(tmp_path) -> None:
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs, "mkdocs is missing: the test extra installs the docs extra (pip install -e '.[test]')"
    out = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "tgo_analysis" / "index.html").is_file()
