"""The model learns from the history: on a small synthetic set with planted structure, one epoch of the
training job beats the same model trained on the same samples with their histories removed by a wide margin
and comes close to the oracle AUC (the true click probabilities). A model that ignored the history would
score like the history-blind one and fail."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.parquet as pq

from dare_rec.data import schema
from dare_rec.data.synthetic import generate
from dare_rec.pipelines import evaluate, train
from tests.conftest import TINY_PRESET, tiny_config

# 2,000 users, 400 items in 20 categories: 36k training samples, a 1-process epoch in ~20 s.
DATA = ["--synthetic.num_users", "2000", "--synthetic.num_items", "400", "--synthetic.num_categories", "20",
        "--synthetic.min_history", "5", "--synthetic.train_slots", "6"]
# Measured (2026-11-23): DARE 0.861, history-blind 0.598, oracle 0.878.
MIN_GAIN_OVER_BLIND = 0.15
MAX_GAP_TO_ORACLE = 0.04


def strip_histories(root):
    """The same samples with every history emptied (targets, labels and click probabilities kept)."""
    for path in root.rglob("*.parquet"):
        table = pq.read_table(path)
        for column in (schema.HIST_ITEM, schema.HIST_CATE, schema.HIST_TS, schema.HIST_RELEVANCE):
            index = table.schema.get_field_index(column)
            table = table.set_column(index, table.schema.field(index),
                                     pa.array([[]] * table.num_rows, type=table.schema.field(index).type))
        pq.write_table(table, path)


def test_dare_learns_from_the_history(tmp_path):
    generate(tiny_config(*DATA).synthetic, tmp_path / "data", progress=False)
    shutil.copytree(tmp_path / "data", tmp_path / "blind")
    strip_histories(tmp_path / "blind")
    auc = {}
    for name in ("data", "blind"):
        run = tmp_path / f"run-{name}"
        assert train.main(["--config", str(TINY_PRESET), "--data.path", str(tmp_path / name),
                           "--train.output_dir", str(run)]) == 0
        metrics = evaluate.evaluate(str(run), progress=False)
        auc[name], oracle = metrics["auc"], metrics["oracle_auc"]
    assert auc["data"] - auc["blind"] >= MIN_GAIN_OVER_BLIND, auc
    assert oracle - auc["data"] <= MAX_GAP_TO_ORACLE, (auc, oracle)
