"""The README and docs/ stay in sync with the code they document, and every reference in them resolves."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator, List, Set

from dare_rec.config import describe_fields
from dare_rec.pipelines.cli import COMMANDS
from tests.conftest import REPO

README_PATH = REPO / "README.md"
README = README_PATH.read_text()
DOCS = REPO / "docs"
CONFIGURATION = (DOCS / "configuration.md").read_text()
MARKDOWN = [README_PATH, *sorted(DOCS.glob("*.md"))]
CODE_PACKAGES = ("dare_rec", "pipelines", "sharding", "launch", "benchmarks")
README_MAX_LINES = 250

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
DOC_CITATION = re.compile(r"docs/([\w.-]+\.md) §(\d+)")
# Built from parts so that this file does not cite them itself.
STALE_CITATIONS = ("DESIGN" + ".md", "shared" + "/research")
SKIPPED_DIRS = {".venv", "third_party", ".git", "runs", "data", "outputs", "build", "dist", "__pycache__"}


def _prose(text: str) -> str:
    """Markdown without its fenced code blocks (their `# comments` are not headings, their text not links)."""
    return FENCE.sub("", text)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: link text kept, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links -> their text
    text = re.sub(r"[^\w\- ]", "", text.lower())  # also drops the backticks and asterisks of markup
    return text.replace(" ", "-")


def anchors(path: Path) -> Set[str]:
    seen: dict = {}
    out = set()
    for _, title in HEADING.findall(_prose(path.read_text())):
        slug = github_slug(title)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def relative_links(path: Path) -> Iterator[str]:
    for target in LINK.findall(_prose(path.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
            continue  # http:, https:, mailto:
        yield target


def repo_files(suffixes: tuple) -> Iterator[Path]:
    results = REPO / "benchmarks" / "results"
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO)
        if path.suffix not in suffixes or not path.is_file():
            continue
        if any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
            continue
        if results in path.parents:
            continue
        yield path


# --- the README ------------------------------------------------------------------------------------------------


def test_readme_is_short():
    lines = len(README.splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move details to docs/ (limit {README_MAX_LINES})"


def test_every_cli_command_is_documented():
    missing = [name for name in COMMANDS if f"dare-rec {name}" not in README]
    assert not missing, f"README lacks the commands {missing}"


def test_quick_start_has_exactly_the_two_commands():
    quick_start = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in quick_start.strip().splitlines()] == ["make demo", "make test"]


def test_readme_links_every_doc():
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if f"(docs/{p.name})" not in README]
    assert not missing, f"README's Documentation list lacks {missing}"


# --- docs/ -----------------------------------------------------------------------------------------------------


def test_every_config_field_is_in_the_configuration_reference():
    missing = [name for name, _, _ in describe_fields() if f"| `{name}` |" not in CONFIGURATION]
    assert not missing, f"docs/configuration.md's field table lacks {missing}"


def test_relative_links_resolve():
    broken: List[str] = []
    for doc in MARKDOWN:
        for target in relative_links(doc):
            path_part, _, anchor = target.partition("#")
            dest = (doc.parent / path_part).resolve() if path_part else doc
            where = f"{doc.relative_to(REPO)}: ({target})"
            if not dest.exists():
                broken.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{where}: no heading with anchor #{anchor}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_github_slug():
    assert github_slug("1. What the product is") == "1-what-the-product-is"
    assert github_slug("4.7 Table optimizers") == "47-table-optimizers"
    assert github_slug("Table optimizers (the optimizer study)") == "table-optimizers-the-optimizer-study"
    assert github_slug("The `dare-rec` command") == "the-dare-rec-command"


def test_code_citations_of_docs_resolve():
    broken: List[str] = []
    for package in CODE_PACKAGES:
        for source in sorted((REPO / package).rglob("*.py")):
            for name, section in DOC_CITATION.findall(source.read_text()):
                doc = DOCS / name
                where = f"{source.relative_to(REPO)}: docs/{name} §{section}"
                if not doc.is_file():
                    broken.append(f"{where}: no such file")
                elif not re.search(rf"^## {section}\. ", doc.read_text(), re.M):
                    broken.append(f"{where}: no heading '## {section}. ...'")
    assert not broken, "broken citations:\n" + "\n".join(broken)


def test_no_citations_of_files_outside_the_repository():
    stale = [f"{path.relative_to(REPO)}: {cited}"
             for path in repo_files((".py", ".md"))
             for cited in STALE_CITATIONS if cited in path.read_text()]
    assert not stale, "citations of files that are not in the repository (use docs/design.md):\n" + "\n".join(stale)


def test_the_demo_numbers_check_reads_the_readme_table(tmp_path):
    from tests import demo_numbers

    shown = demo_numbers.readme_table(README)
    assert set(shown) == {"auc", "oracle_auc", "gauc_user", "gauc_category", "logloss", "oracle_logloss"}
    printed = {key: float(value) for key, value in shown.items()}
    (tmp_path / "same.json").write_text(json.dumps(printed))
    assert demo_numbers.main([str(tmp_path / "same.json")]) == 0
    (tmp_path / "moved.json").write_text(json.dumps({**printed, "gauc_user": printed["gauc_user"] + 0.0004}))
    assert demo_numbers.main([str(tmp_path / "moved.json")]) == 1
