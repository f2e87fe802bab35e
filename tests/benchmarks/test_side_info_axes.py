"""The side-information axes report (``python -m benchmarks.side_info_axes``, run as a command): paired
differences, the acceptance verdicts and the refusals."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _experiment(folder, aucs):
    """``aucs``: {setting: {seed: auc}} of variant dare, written as an experiment's results.json."""
    folder.mkdir()
    runs = [{"variant": "dare", "setting": s, "seed": seed, "auc": a} for s, by in aucs.items() for seed, a in by.items()]
    (folder / "results.json").write_text(json.dumps({"config": "c.yaml", "overrides": [], "runs": runs}))
    return folder


def _report(out, *compares):
    args = [a for c in compares for a in ("--compare", *map(str, c))]
    return subprocess.run([sys.executable, "-m", "benchmarks.side_info_axes", "--output", str(out), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_pairs_by_seed_and_judges_each_kind(tmp_path):
    planted = _experiment(tmp_path / "planted", {"off": {1: 0.70, 2: 0.72, 3: 0.71}, "on": {1: 0.71, 2: 0.72, 3: 0.72}})
    click = _experiment(tmp_path / "click", {"off": {1: 0.90, 2: 0.91}, "on": {1: 0.897, 2: 0.908}})
    out = tmp_path / "out" / "axes.json"
    done = _report(out, ("x", "planted", planted, "on", "off"), ("x", "twin", click, "on", "off"))
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert rows[0]["difference"]["mean"] == pytest.approx((0.01 + 0.0 + 0.01) / 3)
    assert rows[0]["wins"] == 2 and rows[0]["seeds"] == [1, 2, 3]
    assert rows[0]["meets"]  # +0.0067 >= 0.005
    assert rows[1]["difference"]["mean"] == pytest.approx(-0.0025)
    assert not rows[1]["meets"]  # -0.0025 < -0.002
    assert out.with_suffix(".md").read_text().count("| x |") == 2
    assert out.with_suffix(".png").stat().st_size > 0


def test_pairs_only_shared_seeds_and_refuses_missing_settings(tmp_path):
    folder = _experiment(tmp_path / "e", {"off": {1: 0.7, 2: 0.7, 3: 0.7}, "on": {2: 0.8, 3: 0.6}})
    out = tmp_path / "axes.json"
    assert _report(out, ("x", "planted", folder, "on", "off")).returncode == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["seeds"] == [2, 3] and row["difference"]["mean"] == pytest.approx(0.0)
    gone = _report(out, ("x", "planted", folder, "gone", "off"))
    assert gone.returncode != 0 and "no dare runs of setting 'gone'" in gone.stderr
    single = _experiment(tmp_path / "s", {"off": {1: 0.7}, "on": {1: 0.8}})
    one_seed = _report(out, ("x", "planted", single, "on", "off"))
    assert one_seed.returncode != 0 and "pairing needs at least 2" in one_seed.stderr
    kind = _report(out, ("x", "sometimes", folder, "on", "off"))
    assert kind.returncode != 0 and "KIND must be one of" in kind.stderr
