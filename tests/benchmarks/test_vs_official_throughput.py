"""The throughput mode (``python -m benchmarks.vs_official throughput``, run as a command) against a stand-in for
the reference checkout.

The stand-in has the contract the mode relies on: ``train_pytorch.get_args()`` parses ``sys.argv`` and
``create_model(model_type, args)`` builds a model (here from a ``model/`` folder without ``__init__``, like the
reference) whose ``forward(batch_dict)`` returns ``(probability [B, 2], loss, aux_loss)``. Its forward checks
the batch dict the harness builds and logs a hash of the history ids it read, and its factory logs the arguments
it got, so the test sees what the reference would have been asked to build and read. Our side is the real
model, built and stepped like the training job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
    import hashlib, os
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
            with open(os.environ["STANDIN_LOG"] + ".ids", "a") as f:
                f.write(hashlib.sha256(batch["hist_iid"].astype(np.int64).tobytes()).hexdigest() + "\\n")
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


def _throughput(*argv, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.vs_official", "throughput", *argv], cwd=REPO,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, capture_output=True, text=True,
                          timeout=600)


def test_throughput_mode_end_to_end(standin_repo, tmp_path):
    log = tmp_path / "standin.jsonl"
    results = tmp_path / "results"
    proc = _throughput("--official-repo", str(standin_repo), "--quick", "--d-att", "8", "--items", "3000", "1000",
                       "--categories", "50", "--batch-size", "16", "--max-len", "24", "--rounds", "2", "--steps", "2",
                       "--threads", "1", "--results-dir", str(results), "--name", "t", env={"STANDIN_LOG": str(log)})
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
    # the reference read exactly the history ids of the report's batches (ours is built from the same ones)
    given = {sha for shas in report["batches"].values() for sha in shas}
    assert len(given) == 4 and set(Path(f"{log}.ids").read_text().split()) == given
    rows = {(r["code"], r["key"], r["items"]): r for r in report["results"]}
    assert set(rows) == {(c, k, n) for c in ("official", "ours") for k in ("dare_8", "twin") for n in (1000, 3000)}
    for r in rows.values():
        assert len(r["round_median_step_s"]) == 2 and r["step_time_s"]["n"] == 4
        assert r["samples_per_s"]["median"] == pytest.approx(16 / r["step_time_s"]["median"])
    ratio = {(e["items"], e["model"]): e for e in report["ratios"]["ours_over_official"]}
    assert set(ratio) == {(n, k) for n in (1000, 3000) for k in ("dare_8", "twin")}
    for (items, model), e in ratio.items():
        official, ours = rows[("official", model, items)], rows[("ours", model, items)]
        assert e["ratio"] == pytest.approx(official["step_time_s"]["median"] / ours["step_time_s"]["median"])
        assert e["per_round"] == pytest.approx([o / u for o, u in zip(official["round_median_step_s"],
                                                                      ours["round_median_step_s"])])
    assert {(e["code"], e["model"]) for e in report["ratios"]["rows"]} == \
        {(c, k) for c in ("official", "ours") for k in ("dare_8", "twin")}
    # d_att 16 and 64 were not measured: only the DARE-8-vs-TWIN target is reported.
    (target,) = report["targets"]
    assert target["what"] == "ours, DARE d_att 8 / TWIN, 3,000 items" and target["met"] == (target["value"] >= 0.9)
    assert "--model.d_pos_att 8" in " ".join(report["arguments"]["ours dare_8 3,000 items"])
    markdown = (results / "vs_official_t.md").read_text()
    assert "| ours / official |" in markdown and "**3,000 items**" in markdown and "DARE d_att 8 / TWIN" in markdown
    assert (results / "vs_official_t.png").stat().st_size > 0


@pytest.mark.parametrize("extra, message", [
    (["--max-len", "10"], "needs N >= its top-K"),
    (["--items", "1"], "need >= 2 rows"),
    (["--ids", "normal"], "--ids 'normal'"),
    (["--batch-size", "1"], "BatchNorm"),
])
def test_bad_throughput_inputs_fail_before_building(standin_repo, extra, message):
    proc = _throughput("--official-repo", str(standin_repo), "--quick", *extra)
    assert proc.returncode == 2 and message in proc.stderr
