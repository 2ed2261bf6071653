"""The README is a short front door and the docs site builds: strict MkDocs (no broken link, anchor or
cross-reference, no page left out of the nav), and every figure the README quotes lives on one docs page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
#: the README's length budget, in lines (the issue that shortened it: at most about 250)
MAX_README_LINES = 260
#: a measured figure: a decimal with three or more digits after the point, or a time such as "10 min 37 s"
FIGURE = re.compile(r"\b\d+\.\d{3,}\b|\b\d+ min \d+ s\b|\b\d+ min\b")
#: figures of the README that also stand, as other measurements with the same digits, on another page
COINCIDENCES = {
    ("0.9809", "docs/results/cross-validation.md"): "a V_info of the cells in a re-judge table",
    ("0.9758", "docs/results/cross-validation.md"): "a V_info of the challenge in a re-judge table",
    ("0.9758", "docs/results/architectures.md"): "a swin_unetr V_info",
    ("0.9795", "docs/results/profile.md"): "the V_rand of one seed of the previous profile",
    ("0.9850", "docs/results/profile.md"): "the V_info of one seed of the previous profile",
    ("3 min", "docs/how-to/benchmarks.md"): "how long one benchmark mode runs",
}


def _markdown_pages() -> dict[Path, str]:
    return {path: path.read_text() for path in DOCS.rglob("*.md") if "_gen" not in path.parts}


def test_the_readme_is_short() -> None:
    assert len(README.read_text().splitlines()) <= MAX_README_LINES


def test_every_relative_link_of_the_readme_reaches_a_file() -> None:
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert local, "the README links to no docs page"
    missing = [link for link in local if not (REPO_ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_every_figure_the_readme_quotes_lives_on_exactly_one_docs_page() -> None:
    """One place for each figure: the README quotes it beside a link to the docs page that states it, and no
    other page repeats it (the same digits standing for another measurement are listed in COINCIDENCES)."""
    lines = [line for line in README.read_text().splitlines() if FIGURE.search(line)]
    assert lines, "the README quotes no figure at all: its results at a glance are missing"
    pages = _markdown_pages()
    wrong = {}
    for line in lines:
        linked = {str((REPO_ROOT / link).relative_to(REPO_ROOT)) for link in re.findall(r"\]\((docs/[^)#\s]+)", line)}
        for figure in FIGURE.findall(line):
            found = {str(path.relative_to(REPO_ROOT)) for path, text in pages.items() if re.search(rf"(?<![\d.]){re.escape(figure)}(?![\d])", text)}
            found -= {page for (number, page) in COINCIDENCES if number == figure}
            if len(found) != 1 or not found <= linked:
                wrong[figure] = {"stated on": sorted(found), "linked": sorted(linked)}
    assert not wrong, f"figures of the README not stated once, on the page linked beside them: {wrong}"


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict`: every page in the nav, every link, anchor and API cross-reference resolving,
    and the generated reference pages (parameters, command line, API) built from the code."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    mkdocs = Path(sys.executable).parent / "mkdocs"
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    site = tmp_path / "site"
    params = (site / "reference" / "params" / "index.html").read_text()
    assert "augment.elastic.magnitude" in params and "gasp" in params  # a schema key, a registry name
    assert "emseg predict" in (site / "reference" / "cli" / "index.html").read_text()
    assert (site / "reference" / "api" / "config" / "params" / "index.html").is_file()


@pytest.mark.parametrize("name", ["getting-started.md", "how-to/predict.md"])
def test_the_getting_started_path_holds_no_lab_notebook(name: str) -> None:
    """Measurements live under docs/results/ and are linked; the newcomer's path quotes none."""
    text = (DOCS / name).read_text()
    assert not FIGURE.findall(text), f"{name} quotes figures {FIGURE.findall(text)}: link the results page instead"
