"""Synthetic generator: determinism, the data contract, and the planted click model."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dare_rec.config import ConfigError
from dare_rec.data import schema
from dare_rec.data.synthetic import generate
from dare_rec.metrics.offline import auc
from tests.conftest import tiny_config


def file_hashes(root):
    return {p.relative_to(root).as_posix(): schema.sha256_file(p) for p in sorted(root.rglob("*.parquet"))}


def test_same_seed_gives_byte_identical_files(tmp_path, tiny_data):
    generate(tiny_config().synthetic, tmp_path / "again", progress=False)
    assert file_hashes(tmp_path / "again") == file_hashes(tiny_data)
    assert (tmp_path / "again" / "meta.json").read_text() == (tiny_data / "meta.json").read_text()


def test_other_seed_gives_other_data(tmp_path, tiny_data):
    generate(tiny_config("--synthetic.seed", "1").synthetic, tmp_path / "other", progress=False)
    assert file_hashes(tmp_path / "other")["train/part-00000.parquet"] != \
        file_hashes(tiny_data)["train/part-00000.parquet"]


def test_contract_and_meta(tiny_data):
    meta = schema.DatasetMeta.read(tiny_data)
    syn = tiny_config().synthetic
    n_rows = syn.num_users * syn.candidates_per_slot
    assert meta.counts == {"train": n_rows * syn.train_slots, "val": n_rows, "test": n_rows}
    assert meta.num_items == syn.num_items + 1 and meta.num_categories == syn.num_categories + 1
    assert meta.has_click_prob and meta.files["train"]
    for split in schema.SPLITS:
        table = pq.read_table(tiny_data / split)
        assert table.num_rows == meta.counts[split]
        assert schema.check_file_schema(schema.split_files(tiny_data, split)[0]) == [
            schema.HIST_TS, schema.TARGET_TS, schema.CLICK_PROB, schema.HIST_RELEVANCE]
        lengths = pc.list_value_length(table["hist_item"]).to_numpy()
        assert lengths.max() <= syn.max_history
        assert pc.min(table["target_item"]).as_py() >= 1 and pc.max(table["target_item"]).as_py() < meta.num_items
        assert set(np.unique(table["label"].to_numpy())) <= {0, 1}
        # histories run oldest -> newest and end before the target
        for ts, target_ts in zip(table["hist_ts"].to_pylist()[:200], table["target_ts"].to_pylist()[:200]):
            assert ts == sorted(ts) and (not ts or ts[-1] < target_ts)
    assert meta.max_history == max(pc.max(pc.list_value_length(pq.read_table(tiny_data / s)["hist_item"])).as_py()
                                   for s in schema.SPLITS)


def test_relevance_and_click_probability_follow_the_planted_model(tiny_data):
    syn = tiny_config().synthetic
    t = pq.read_table(tiny_data / "train").to_pydict()
    residual_by_item = {}
    for i in range(len(t["label"])):
        n = len(t["hist_cate"][i])
        expected = [float(c == t["target_cate"][i]) * np.exp(-(n - j - 1) / syn.relevance_decay)
                    for j, c in enumerate(t["hist_cate"][i])]
        np.testing.assert_allclose(t["hist_relevance"][i], expected, rtol=1e-6)
        p = t["click_prob"][i]
        # logit - relevance term - base = the target item's latent quality, constant per item
        residual = np.log(p / (1 - p)) - syn.base_logit - syn.relevance_weight * np.log1p(sum(expected))
        residual_by_item.setdefault(t["target_item"][i], []).append(residual)
    spread = max(np.ptp(v) for v in residual_by_item.values())
    assert spread < 1e-4, "click logits are not base + quality(item) + weight * log1p(relevance)"


def test_oracle_auc_shows_real_but_imperfect_signal(tiny_data):
    t = pq.read_table(tiny_data / "train")
    oracle = auc(t["label"].to_numpy(), t["click_prob"].to_numpy())
    assert 0.75 < oracle < 0.95


@pytest.mark.parametrize("field,value", [("num_users", "0"), ("min_history", "-1"), ("exploration", "2")])
def test_bad_generator_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=f"^synthetic.{field}"):
        tiny_config(f"--synthetic.{field}", value)


def test_interest_phases_make_runs_of_one_interest_that_recur(tmp_path):
    """interest_phase P: behaviors m of a phase (m // P) share one of the user's interests; later phases return to
    interests seen long before (the long-history world)."""
    cfg = tiny_config("--synthetic.interest_phase", "10", "--synthetic.exploration", "0",
                      "--synthetic.interest_drift", "0", "--synthetic.num_users", "40",
                      "--synthetic.min_history", "100", "--synthetic.max_history", "200").synthetic
    generate(cfg, tmp_path, progress=False)
    t = pq.read_table(tmp_path / "test").to_pydict()
    recurred = 0
    for hist in t["hist_cate"]:
        # the category changes only at phase boundaries, which lie P apart wherever the history starts
        changes = [j for j in range(1, len(hist)) if hist[j] != hist[j - 1]]
        assert len({j % 10 for j in changes}) <= 1, changes
        offset = changes[0] % 10 if changes else 0
        firsts = [hist[j] for j in range(offset, len(hist), 10)]
        assert len(set(firsts)) <= cfg.interests_per_user
        recurred += any(firsts[i] in firsts[:i - 1] and firsts[i] != firsts[i - 1] for i in range(2, len(firsts)))
    assert recurred >= len(t["hist_cate"]) // 2


def test_relevance_cap_bounds_the_relevance_term_of_the_click_logit(tmp_path):
    cfg = tiny_config("--synthetic.relevance_cap", "0.5", "--synthetic.item_quality_std", "0").synthetic
    generate(cfg, tmp_path, progress=False)
    t = pq.read_table(tmp_path / "train").to_pydict()
    relevance = np.array([sum(r) for r in t["hist_relevance"]])
    assert (relevance > 0.5).any() and (relevance < 0.5).any()
    expected = cfg.base_logit + cfg.relevance_weight * np.log1p(np.minimum(relevance, 0.5))
    p = np.array(t["click_prob"], dtype=np.float64)
    np.testing.assert_allclose(np.log(p / (1 - p)), expected, atol=1e-4)
