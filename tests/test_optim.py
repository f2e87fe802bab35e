"""The tables' step size when the config leaves it null: chosen from the dataset (dare_rec/optim.py)."""

from __future__ import annotations

import json

import pytest

from dare_rec.config import TrainConfig
from dare_rec.optim import default_sparse_lr, resolve_sparse_lr
from dare_rec.pipelines import train
from tests.pipelines.test_jobs import events, train_args


@pytest.mark.parametrize("samples,items,lr", [
    (36_864, 9_715, 0.2),  # the planted log: 3.8 training samples per item
    (98_304, 20_001, 0.2),  # synthetic_small: 4.9
    (12_288, 1_636, 0.02),  # the dense-catalog log: 7.5
    (12_000, 1_700, 0.02),  # the real Taobao cut of the issue: 7.1
])
def test_exact_adagrad_takes_its_step_from_the_catalog(samples, items, lr):
    cfg = TrainConfig(sparse_optimizer="adagrad")
    assert resolve_sparse_lr(cfg, samples, items) == lr and cfg.sparse_lr == lr


def test_other_optimizers_and_given_values_keep_their_step():
    assert default_sparse_lr("adam", 100.0) == default_sparse_lr("dense_adam", 0.1) == 0.01
    assert default_sparse_lr("rowwise_adagrad", 100.0) == 0.05
    assert default_sparse_lr("adagrad", None) == 0.2  # no dataset at hand: the sparse-catalog value
    cfg = TrainConfig(sparse_optimizer="adagrad", sparse_lr=0.1)
    assert resolve_sparse_lr(cfg, 12_288, 1_636) == 0.1


def test_the_run_records_the_step_it_chose(tiny_data, tmp_path):
    meta = json.loads((tiny_data / "meta.json").read_text())
    per_item = meta["counts"]["train"] / (meta["num_items"] - 1)
    assert train.main(train_args(tiny_data, tmp_path / "run", "--train.sparse_optimizer", "adagrad",
                                 "--train.sparse_lr", "null", "--train.max_steps", "2")) == 0
    start = next(e for e in events(tmp_path / "run") if e["event"] == "start")
    assert start["config"]["train"]["sparse_lr"] == (0.02 if per_item >= 6 else 0.2)
