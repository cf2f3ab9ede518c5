"""The documentation: the README stays a front page, the MkDocs site builds with warnings
as errors, and every promise of the Trust page names tests that exist."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def build(project: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d",
                           str(site)], cwd=project, text=True, capture_output=True,
                          timeout=120)


def test_site_builds_with_warnings_as_errors(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (docs or test extra)")
    result = build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "trust" / "index.html").exists()


def test_a_broken_link_fails_the_build(tmp_path):
    """--strict is what makes the CI build worth having: a link to a missing page or
    anchor is an error, not a warning."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (docs or test extra)")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    page = tmp_path / "docs" / "md.md"
    page.write_text(page.read_text() + "\nSee [the trust page](trust.md#no-such-section).\n")
    result = build(tmp_path, tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-section" in result.stdout + result.stderr


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in DOCS.glob("*.md"):
        assert re.search(rf":\s*{re.escape(page.name)}\s*$", nav, re.M), page.name


def test_readme_is_a_front_page_that_links_every_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) < 12_000, "the reference belongs in docs/, not the README"
    assert re.search(r"^## The verdict$", text, re.M)
    for page in DOCS.glob("*.md"):
        assert f"(docs/{page.name}" in text, f"the README does not link docs/{page.name}"
    for target in re.findall(r"\]\((docs/[^)#]+)", text):
        assert (ROOT / target).exists(), target


def _promises() -> list[tuple[str, str, list[str]]]:
    """(promise's first words, test file under tests/, test name patterns) for every
    '*Held by*' paragraph of the Trust page."""
    text = (DOCS / "trust.md").read_text(encoding="utf-8")
    out = []
    for item in re.split(r"\n- ", text)[1:]:
        promise, _, held = item.partition("*Held by*")
        assert held, f"a promise without the tests that hold it: {promise[:80]!r}"
        held = " ".join(held.split())
        for path, names in re.findall(r"`((?:unit|integration|physics)/test_\w+\.py)`"
                                      r"(?: \(([^)]*)\))?", held):
            out.append((" ".join(promise.split())[:50], path, re.findall(r"`(test_[\w*]+)`",
                                                                         names or "")))
    return out


PROMISES = _promises()


def test_trust_page_has_its_promises():
    assert len(PROMISES) >= 25
    assert sum(bool(names) for _, _, names in PROMISES) >= 25


@pytest.mark.parametrize("promise, path, names", PROMISES,
                         ids=[f"{p[:30]}-{f}" for p, f, _ in PROMISES])
def test_each_promise_names_tests_that_exist(promise, path, names):
    file = ROOT / "tests" / path
    assert file.exists(), f"{promise!r} is held by {path}, which does not exist"
    defined = re.findall(r"^\s*def (test_\w+)", file.read_text(encoding="utf-8"), re.M)
    for name in names:
        assert fnmatch.filter(defined, name), f"{path} has no test matching {name!r}"
