"""The README stays in sync with the code it documents."""

from __future__ import annotations

from dare_rec.config import describe_fields
from dare_rec.pipelines.cli import COMMANDS
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_every_config_field_is_in_the_readme_table():
    missing = [name for name, _, _ in describe_fields() if f"| `{name}` |" not in README]
    assert not missing, f"README configuration table lacks {missing}"


def test_every_cli_command_is_documented():
    assert all(f"dare-rec {name}" in README for name in COMMANDS)


def test_quick_start_has_exactly_the_two_commands():
    quick_start = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in quick_start.strip().splitlines()] == ["make demo", "make test"]
