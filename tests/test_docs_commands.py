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
