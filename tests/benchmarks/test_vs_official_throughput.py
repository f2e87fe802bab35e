"""The throughput mode of benchmarks/vs_official.py against a stand-in for the reference checkout.

The stand-in has the contract the mode relies on: ``train_pytorch.get_args()`` parses ``sys.argv`` and
``create_model(model_type, args)`` builds a model (here from a ``model/`` folder without ``__init__``, like the
reference) whose ``forward(batch_dict)`` returns ``(probability [B, 2], loss, aux_loss)``. Its forward checks
the batch dict the harness builds and its factory logs the arguments it got, so the test sees what the
reference would have been asked to build. Our side is the real model, built and stepped like the training job.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import vs_official as V
from benchmarks.attention_dims import FullHistories

REPO = Path(__file__).resolve().parents[2]

STANDIN_TRAINER = textwrap.dedent('''
    import argparse, json, os
    from model.standin import StandIn

    def get_args():
        p = argparse.ArgumentParser()
        for flag in ("-model_name", "-long_seq_split", "-short_model_type", "-long_model_type", "-attn_func",
                     "-hard_or_soft", "-use_time_mode"):
            p.add_argument(flag)
        for flag in ("-max_length", "-item_n", "-cate_n", "-top_k", "-time_embedding_dim", "-category_embedding_dim",
                     "-batch_size", "-log_interval", "-seed"):
            p.add_argument(flag, type=int)
        for flag in ("-attention_item_embedding_dim", "-attention_category_embedding_dim",
                     "-attention_time_embedding_dim"):
            p.add_argument(flag, type=int, default=-1)
        p.add_argument("-learning_rate", type=float)
        p.add_argument("-weight_decay", type=float)
        p.add_argument("-use_cross_feature", type=bool)
        p.add_argument("-use_aux_loss", type=bool)
        return p.parse_args()

    def create_model(model_type, args):
        assert model_type == "DIN", model_type
        with open(os.environ["STANDIN_LOG"], "a") as f:
            f.write(json.dumps(vars(args)) + "\\n")
        return StandIn(args.item_n, args.category_embedding_dim, args.max_length, args.batch_size)
''')

STANDIN_MODEL = textwrap.dedent('''
    import numpy as np
    import torch
    from torch import nn

    class StandIn(nn.Module):
        def __init__(self, item_n, dim, max_length, batch_size):
            super().__init__()
            self.item_embedding = nn.Embedding(item_n, dim)
            self.head = nn.Linear(dim, 2)
            self.shape = (batch_size, max_length)

        def forward(self, batch):
            b, n = self.shape
            assert batch["hist_iid"].shape == batch["hist_cid"].shape == batch["hist_tid"].shape == (b, n)
            assert batch["iid"].shape == batch["cid"].shape == batch["tid"].shape == (b,)
            assert (batch["mask"] == 1).all() and (batch["tid"] == 0).all()
            assert (batch["hist_tid"] == np.arange(n, 0, -1)).all()
            assert (batch["target"].sum(axis=1) == 1).all() and batch["target"].shape == (b, 2)
            assert batch["hist_iid"].min() >= 1 and batch["hist_iid"].max() < self.item_embedding.num_embeddings
            ids = torch.tensor(batch["hist_iid"], dtype=torch.int32)
            probability = nn.functional.softmax(self.head(self.item_embedding(ids).mean(1)), dim=1) + 1e-8
            target = torch.tensor(batch["target"], dtype=torch.int32)
            loss = -torch.mean(torch.log(torch.sum(probability * target, dim=1)))
            aux = loss * 0.5
            return probability, loss + aux, aux
''')


@pytest.fixture()
def standin_repo(tmp_path) -> Path:
    repo = tmp_path / "DARE"
    (repo / "model").mkdir(parents=True)
    (repo / "train_pytorch.py").write_text(STANDIN_TRAINER)
    (repo / "model" / "standin.py").write_text(STANDIN_MODEL)
    return repo


def _logged(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_throughput_mode_end_to_end(standin_repo, tmp_path):
    log = tmp_path / "standin.jsonl"
    results = tmp_path / "results"
    argv = ["throughput", "--official-repo", str(standin_repo), "--quick", "--d-att", "8", "--items", "3000",
            "1000", "--categories", "50", "--batch-size", "16", "--max-len", "24", "--rounds", "2", "--steps", "2",
            "--threads", "1", "--results-dir", str(results), "--name", "t"]
    env = {**os.environ, "STANDIN_LOG": str(log), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.vs_official", *argv], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # The reference factory was asked for its DARE with every attention dim at d_att and its TWIN without
    # them, representation dims 16, at each table size; each model was built once.
    built = _logged(log)
    assert sorted((a["model_name"], a["item_n"]) for a in built) == \
        [("DARE", 1000), ("DARE", 3000), ("twin", 1000), ("twin", 3000)]
    for a in built:
        attention = [a[f"attention_{f}_embedding_dim"] for f in ("item", "category", "time")]
        assert attention == ([8, 8, 8] if a["model_name"] == "DARE" else [-1, -1, -1])
        assert (a["category_embedding_dim"], a["time_embedding_dim"], a["cate_n"], a["max_length"]) == (16, 16, 50, 24)
        assert a["use_aux_loss"] and a["long_seq_split"] == "0:24" and a["hard_or_soft"] == "soft"
    # Nothing written into the checkout.
    assert sorted(p.name for p in standin_repo.rglob("*")) == ["model", "standin.py", "train_pytorch.py"]

    report = json.loads((results / "vs_official_t.json").read_text())
    assert report["shape"]["items"] == [1000, 3000] and report["protocol"]["ids"] == "zipf (exponent 1.1)"
    rows = {(r["code"], r["key"], r["items"]): r for r in report["results"]}
    assert set(rows) == {(c, k, n) for c in ("official", "ours") for k in ("dare_8", "twin") for n in (1000, 3000)}
    for r in rows.values():
        assert len(r["round_median_step_s"]) == 2 and r["step_time_s"]["n"] == 4
        assert r["samples_per_s"]["median"] == pytest.approx(16 / r["step_time_s"]["median"])
    ratio = {(e["items"], e["model"]): e for e in report["ratios"]["ours_over_official"]}
    assert set(ratio) == {(n, k) for n in (1000, 3000) for k in ("dare_8", "twin")}
    assert ratio[(3000, "dare_8")]["ratio"] == pytest.approx(
        rows[("official", "dare_8", 3000)]["step_time_s"]["median"] / rows[("ours", "dare_8", 3000)]["step_time_s"]["median"])
    assert {(e["code"], e["model"]) for e in report["ratios"]["rows"]} == \
        {(c, k) for c in ("official", "ours") for k in ("dare_8", "twin")}
    # d_att 16 and 64 were not measured: only the DARE-8-vs-TWIN target is reported.
    assert [t["what"] for t in report["targets"]] == ["ours, DARE d_att 8 / TWIN, 3,000 items"]
    assert "--model.d_pos_att 8" in " ".join(report["arguments"]["ours dare_8 3,000 items"])
    markdown = (results / "vs_official_t.md").read_text()
    assert "| ours / official |" in markdown and "**3,000 items**" in markdown and "DARE d_att 8 / TWIN" in markdown
    assert (results / "vs_official_t.png").stat().st_size > 0


def _row(code, key, items, rounds):
    """A result row from per-round step times (seconds)."""
    model, _, d_att = key.partition("_")
    case = V.ThroughputCase(code, model, int(d_att) if d_att else None, items)
    return V.throughput_rows({case: rounds}, batch_size=100)[0]


def test_ratios_and_targets_from_hand_made_timings():
    rows = [
        _row("official", "dare_16", 10, [[1.0, 1.0], [1.2, 1.2]]),
        _row("ours", "dare_16", 10, [[0.25, 0.25], [0.4, 0.4]]),
        _row("official", "dare_64", 10, [[4.0], [4.0]]),
        _row("ours", "dare_64", 10, [[0.5], [0.5]]),
        _row("ours", "dare_8", 10, [[0.2], [0.2]]),
        _row("ours", "twin", 10, [[0.19], [0.19]]),
        _row("ours", "dare_16", 1, [[0.2, 0.2], [0.2, 0.2]]),
    ]
    assert rows[0]["step_time_s"]["median"] == pytest.approx(1.1)
    assert rows[0]["samples_per_s"]["median"] == pytest.approx(100 / 1.1)
    ratios = V.throughput_ratios(rows)
    vs = {e["model"]: e for e in ratios["ours_over_official"] if e["items"] == 10}
    assert vs["dare_16"]["ratio"] == pytest.approx(1.1 / 0.325)
    assert vs["dare_16"]["per_round"] == pytest.approx([4.0, 3.0])
    assert vs["dare_64"]["ratio"] == pytest.approx(8.0)
    (rows_ratio,) = [e for e in ratios["rows"] if e["model"] == "dare_16"]
    assert (rows_ratio["code"], rows_ratio["items"], rows_ratio["over_items"]) == ("ours", 10, 1)
    assert rows_ratio["ratio"] == pytest.approx(0.2 / 0.325)
    targets = {t["what"]: t for t in V.throughput_targets(ratios)}
    assert targets["ours / official, DARE d_att 16, 10 items"]["met"]
    assert targets["ours / official, DARE d_att 64, 10 items"]["met"]  # 8.0 >= 8
    assert not targets["ours, DARE d_att 16: 10 / 1 items"]["met"]  # 0.62 < 0.8
    assert targets["ours, DARE d_att 8 / TWIN, 10 items"]["value"] == pytest.approx(0.95)
    assert len(targets) == 4


def test_both_codes_read_the_same_ids():
    g = torch.Generator().manual_seed(0)
    histories = FullHistories.sample(4, 6, 50, 7, g, "uniform")
    ours = histories.to_batch()
    official = V.official_batch(histories)
    features = ours.sparse_features
    assert np.array_equal(official["hist_iid"].ravel(), features["hist_item"].values().numpy())
    assert np.array_equal(official["hist_cid"].ravel(), features["hist_cate"].values().numpy())
    assert np.array_equal(official["iid"], features["target_item"].values().numpy())
    assert np.array_equal(official["cid"], features["target_cate"].values().numpy())
    assert features["hist_item"].lengths().tolist() == [6] * 4
    assert np.array_equal(official["target"][:, 0], ours.labels.numpy())  # [1, 0] = clicked
    assert official["hist_tid"][0].tolist() == [6, 5, 4, 3, 2, 1]  # the most recent behavior is 1 before the target
    zipf = FullHistories.sample(2000, 1, 1000, 7, torch.Generator().manual_seed(0)).hist_items
    assert zipf.min() >= 1 and zipf.max() < 1000
    assert (zipf == 1).float().mean() > 0.05 and statistics.median(zipf.flatten().tolist()) < 50  # popular ids first


def test_official_flags_per_model():
    dare = V.official_throughput_flags("dare", 32, 1000, 50, 256, 200, 16)
    values = {dare[i]: dare[i + 1] for i in range(len(dare) - 1) if dare[i].startswith("-")}
    assert all(values[f] == "32" for f in V.OFFICIAL_ATTENTION_DIM_FLAGS)
    assert (values["-model_name"], values["-item_n"], values["-cate_n"], values["-batch_size"]) == \
        ("DARE", "1000", "50", "256")
    assert (values["-category_embedding_dim"], values["-time_embedding_dim"], values["-use_aux_loss"]) == \
        ("16", "16", "True")
    twin = V.official_throughput_flags("twin", None, 1000, 50, 256, 200, 16)
    assert not set(V.OFFICIAL_ATTENTION_DIM_FLAGS) & set(twin) and "twin" in twin
    ours = " ".join(V.our_throughput_overrides("dare", 32, 200, 16))
    assert "--model.d_att 32 --model.d_pos_att 32" in ours and "--model.d_rep 16 --model.d_pos 16" in ours


def test_the_checkout_is_imported_in_isolation(standin_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_LOG", str(tmp_path / "log.jsonl"))
    build = V.load_official_factory(standin_repo)
    assert not {"train_pytorch", "model", "model.standin"} & set(sys.modules)
    model, args = build(V.official_throughput_flags("twin", None, 100, 10, 8, 24, 16))
    assert args.item_n == 100 and model.item_embedding.num_embeddings == 100
    with pytest.raises(V.HarnessError, match="refused"):
        build(["-no_such_flag", "1"])
    monkeypatch.setitem(sys.modules, "model", type(sys)("model"))
    with pytest.raises(V.HarnessError, match="'model' is shadowed"):
        V.load_official_factory(standin_repo)


@pytest.mark.parametrize("extra, message", [
    (["--max-len", "10"], "needs N >= its top-K"),
    (["--items", "1"], "need >= 2 rows"),
    (["--ids", "normal"], "--ids 'normal'"),
    (["--batch-size", "1"], "BatchNorm"),
])
def test_bad_throughput_inputs_fail_before_building(standin_repo, capsys, extra, message):
    assert V.main(["throughput", "--official-repo", str(standin_repo), "--quick", *extra]) == 2
    assert message in capsys.readouterr().err
