"""End to end on the tiny dataset: analyze attention / gradients / representation and plot, through their
entry points, on checkpoints trained here (attention also on 2 processes, which must agree with 1)."""

from __future__ import annotations

import json

import pytest

from dare_rec.pipelines import analyze, plot, train
from tests.conftest import TINY_PRESET, tiny_config
from tests.pipelines.test_jobs import launch

LOOSE_RULES = ["--min-target-samples", "0", "--min-count", "0"]


@pytest.fixture(scope="module")
def tiny_runs(tiny_data, tmp_path_factory):
    """An experiment-like folder with a few-step dare run and twin run."""
    root = tmp_path_factory.mktemp("experiment")
    for variant in ("dare", "twin"):
        assert train.main(["--config", str(TINY_PRESET), "--data.path", str(tiny_data), "--model.variant", variant,
                           "--train.output_dir", str(root / variant), "--train.max_steps", "8",
                           "--train.log_every", "4", "--train.val_every", "4"]) == 0
    return root


def curves(result):
    """Every curve of an attention result, flattened: {(ranking, source, metric): values}."""
    entries = {**result["rankings"], **result["baselines"]}
    return {(r, s, m): v for r, e in entries.items() for s, d in e.items() for m, v in d.items() if m != "samples"}


@pytest.fixture(scope="module")
def attention_one_process(tiny_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("attention") / "one.json"
    assert analyze.main(["attention", "--checkpoint", str(tiny_runs / "dare"), str(tiny_runs / "twin"),
                         "--output", str(out), *LOOSE_RULES]) == 0
    return out


def test_attention(attention_one_process):
    summary = json.loads(attention_one_process.read_text())
    assert summary["world_size"] == 1 and attention_one_process.with_suffix(".png").stat().st_size > 0
    assert [r["name"] for r in summary["checkpoints"]] == ["dare", "twin"]
    for result in summary["checkpoints"]:
        assert set(result["rankings"]) == {"gsu", "category_position"} and set(result["baselines"]) == {"recent"}
        for (ranking, source, metric), curve in curves(result).items():
            assert len(curve) == tiny_config().model.top_k
            assert all(0 <= v <= 1 + 1e-9 for v in curve), (ranking, source, metric)
            if source == "mutual_information":  # DCG@k over the ideal DCG@K only grows with k
                assert curve == sorted(curve)
        assert result["rankings"]["gsu"]["mutual_information"]["samples"] > 0


def test_attention_on_two_processes_agrees_with_one(tiny_runs, attention_one_process, tmp_path):
    two = tmp_path / "two.json"
    assert launch(analyze.main, ["attention", "--checkpoint", str(tiny_runs / "dare"), str(tiny_runs / "twin"),
                                 "--output", str(two), *LOOSE_RULES]) == {0: 0, 1: 0}
    a, b = (json.loads(p.read_text()) for p in (attention_one_process, two))
    assert b["world_size"] == 2
    for ra, rb in zip(a["checkpoints"], b["checkpoints"]):
        ca, cb = curves(ra), curves(rb)
        assert ca.keys() == cb.keys()
        for key in ca:  # the same samples, gathered in another order: equal up to summation order
            assert cb[key] == pytest.approx(ca[key], rel=1e-9), key


def test_attention_skip_rules_with_the_paper_defaults_skip_tiny_data(tiny_runs, tmp_path):
    out = tmp_path / "a.json"
    assert analyze.main(["attention", "--checkpoint", str(tiny_runs / "dare"), "--output", str(out)]) == 0
    summary = json.loads(out.read_text())
    # 3,600 training samples over 20 categories: no target category reaches the paper's 700 samples
    assert summary["mutual_information"]["skipped"]["rare_target"] == summary["samples"] == 900
    gsu = summary["checkpoints"][0]["rankings"]["gsu"]
    assert gsu["mutual_information"]["samples"] == 0 and gsu["mutual_information"]["ndcg"][0] is None
    assert gsu["ground_truth"]["samples"] > 0


@pytest.mark.parametrize("variant", ["twin", "dare"])
def test_gradients(tiny_data, tmp_path, variant):
    overrides = ["--data.path", str(tiny_data), "--model.variant", variant, "--train.max_steps", "4"]
    out = tmp_path / f"g-{variant}.json"
    every = 1 if variant == "twin" else 2
    summary = analyze.analyze_gradients(tiny_config(*overrides), record_every=every, output=str(out), progress=False)
    assert summary["steps"] == 4 and [e["step"] for e in summary["loss"]] == list(range(every, 5, every))
    assert out.with_suffix(".png").stat().st_size > 0
    tables = {t["table"]: t for t in json.loads(out.read_text())["tables"]}
    if variant == "twin":
        assert set(tables) == {"item_shared", "cate_shared", "pos_shared"}
        cate = tables["cate_shared"]
        assert cate["roles"] == ["att", "rep"] and cate["steps"] == 4
        assert cate["norm_ratio"] > 0 and -1 <= cate["mean_row_cosine"] <= 1
        assert 0 <= cate["conflicting_update_share"] <= 1
        # recording changes nothing: the same losses as `dare-rec train`, step by step
        run = tmp_path / "train"
        assert train.main(["--config", str(TINY_PRESET), *overrides, "--train.output_dir", str(run),
                           "--train.log_every", "1"]) == 0
        trained = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [e["loss"] for e in summary["loss"]] == \
            pytest.approx([e["loss"] for e in trained if e["event"] == "train"], rel=1e-6)
    else:
        assert set(tables) == {"item_att", "cate_att", "pos_att", "item_rep", "cate_rep", "pos_rep"}
        assert tables["cate_att"]["roles"] == ["att"] and tables["cate_rep"]["roles"] == ["rep"]
        assert "norm_ratio" not in tables["cate_att"] and tables["cate_att"]["att_mean_row_norm"] > 0


def test_representation(tiny_runs, tmp_path):
    out = tmp_path / "r.json"
    assert analyze.main(["representation", "--checkpoint", str(tiny_runs / "twin"), "--clusters", "2,5",
                         "--seeds", "1,2", "--output", str(out)]) == 0
    result = json.loads(out.read_text())["checkpoints"][0]
    assert result["samples"] == 900 and out.with_suffix(".png").stat().st_size > 0
    for name in ("esu", "target_aware"):
        rep = result["representations"][name]
        assert rep["k"] == [2, 5] and len(rep["mi_bits"]["per_seed"]) == 2
        assert all(0 <= v <= rep["label_entropy_bits"] + 1e-9 for v in rep["mi_bits"]["mean"])


def test_representation_of_a_stacked_tin_run(tiny_data, tmp_path):
    """Two ESU layers: h is both layers' sums (layer 2 from its own search), and the analysis clusters it."""
    run = tmp_path / "stacked"
    assert train.main(["--config", str(TINY_PRESET), "--data.path", str(tiny_data), "--model.esu_layers", "2",
                       "--train.output_dir", str(run), "--train.max_steps", "4", "--train.val_every", "4"]) == 0
    out = tmp_path / "r.json"
    assert analyze.main(["representation", "--checkpoint", str(run), "--clusters", "2", "--seeds", "1",
                         "--output", str(out)]) == 0
    result = json.loads(out.read_text())["checkpoints"][0]
    assert set(result["representations"]) == {"esu", "target_aware"} and result["samples"] == 900


def test_plot_runs_and_experiment_folders(tiny_runs, tmp_path, capsys):
    out = tmp_path / "curves.png"
    assert plot.main([str(tiny_runs), "--output", str(out)]) == 0
    assert out.stat().st_size > 0 and "2 runs: dare, twin" in capsys.readouterr().out


def test_bad_input_exits_2_with_one_line(tiny_runs, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        plot.main([str(tmp_path)])
    assert e.value.code == 2 and "no run under" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.jsonl").write_text('{"event": "train", "step": 1, "loss": 0.5}\n{"event": "val", "step": x}\n')
    with pytest.raises(SystemExit) as e:
        plot.main([str(bad)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "metrics.jsonl: line 2" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:
        analyze.main(["attention", "--checkpoint", str(tmp_path / "missing")])
    assert e.value.code == 2 and "is not a checkpoint" in capsys.readouterr().err


def test_representation_needs_at_least_two_clusters(tiny_runs):
    with pytest.raises(SystemExit) as e:
        analyze.main(["representation", "--checkpoint", str(tiny_runs / "dare"), "--clusters", "1,5"])
    assert e.value.code == 2
