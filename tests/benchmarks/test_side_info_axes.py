"""benchmarks/side_info_axes.py: paired differences, the acceptance verdicts and the refusals."""

import json

import pytest

from benchmarks import side_info_axes


def _experiment(folder, aucs):
    """``aucs``: {setting: {seed: auc}} of variant dare, written as an experiment's results.json."""
    folder.mkdir()
    runs = [{"variant": "dare", "setting": s, "seed": seed, "auc": a} for s, by in aucs.items() for seed, a in by.items()]
    (folder / "results.json").write_text(json.dumps({"config": "c.yaml", "overrides": [], "runs": runs}))
    return folder


def test_pairs_by_seed_and_judges_each_kind(tmp_path):
    planted = _experiment(tmp_path / "planted", {"off": {1: 0.70, 2: 0.72, 3: 0.71}, "on": {1: 0.71, 2: 0.72, 3: 0.72}})
    click = _experiment(tmp_path / "click", {"off": {1: 0.90, 2: 0.91}, "on": {1: 0.897, 2: 0.908}})
    out = tmp_path / "out" / "axes.json"
    side_info_axes.main(["--output", str(out), "--compare", "x", "planted", str(planted), "on", "off",
                         "--compare", "x", "twin", str(click), "on", "off"])
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
    row = side_info_axes.compare("x", "planted", folder, "on", "off", "dare")
    assert row["seeds"] == [2, 3] and row["difference"]["mean"] == pytest.approx(0.0)
    with pytest.raises(SystemExit, match="no dare runs of setting 'gone'"):
        side_info_axes.compare("x", "planted", folder, "gone", "off", "dare")
    single = _experiment(tmp_path / "s", {"off": {1: 0.7}, "on": {1: 0.8}})
    with pytest.raises(SystemExit, match="pairing needs at least 2"):
        side_info_axes.compare("x", "planted", single, "on", "off", "dare")
