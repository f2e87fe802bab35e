"""The README/docs command runner (tests/docs_commands.py): its plan, and (marked slow) the whole run."""

from __future__ import annotations

import pytest

from tests import docs_commands
from tests.conftest import REPO


def test_every_documented_command_runs_or_has_a_stated_reason():
    commands = docs_commands.plan(REPO)
    assert [c.run for c in commands[:2]] == ["make demo", "make test"]  # the quick start comes first
    ran = [c for c in commands if c.run is not None]
    assert len(ran) >= 30
    reasons = {reason for _, reason in docs_commands.SKIPS} | {"the same command ran above"}
    assert all(c.note in reasons for c in commands if c.run is None)
    # long commands are shortened in the open: every change is said
    assert all(c.note.startswith("shortened: ") for c in ran if c.run != docs_commands.without_comment(c.written))


@pytest.mark.slow
def test_every_documented_command_exits_0_in_a_fresh_clone(tmp_path):
    assert docs_commands.main(["--output", str(tmp_path)]) == 0, (tmp_path / "report.md").read_text()


def test_only_shell_fences_hold_commands(tmp_path):
    """A block in another language (a diagram, YAML) is not run, nor is the prose after it; bash blocks
    after it are."""
    doc = tmp_path / "doc.md"
    doc.write_text("```text\nmake diagram\n```\n\nmake prose\n\n```yaml\nmake: yaml\n```\n\n```bash\nmake demo\n"
                   "dare-rec train \\\n    --config c.yaml\n```\n\n```\nmake plain\n```\n")
    assert [c.written for c in docs_commands.commands_of(doc)] == ["make demo", "dare-rec train --config c.yaml",
                                                                   "make plain"]
