"""Synthetic generator: determinism, the data contract, and the planted click model."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dare_rec.config import ConfigError
from dare_rec.data import schema
from dare_rec.data.parquet import ParquetBatchReader
from dare_rec.data.synthetic import generate, planted_pair_map
from dare_rec.metrics.offline import auc
from tests.conftest import OBJECTIVES, tiny_config


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


# Planted side information (docs/side-info.md §3): behavior types and session timestamps with a time decay.
TYPES = ("--synthetic.behavior_types", "[pv, cart, fav, buy]", "--synthetic.behavior_type_probs", "[0.4, 0.2, 0.2, 0.2]",
         "--synthetic.behavior_type_weights", "[1, 3, 2, 4]")
SESSIONS = ("--synthetic.timestamps", "sessions", "--synthetic.session_behaviors", "4",
            "--synthetic.session_gap_s", "30", "--synthetic.session_break_s", "86400")
WORLD = ("user_id", "target_item", "target_cate", "hist_item", "hist_cate")  # what the side effects leave alone


def position_relevance(t, row, tau):
    """Today's relevance of row ``row`` of a pydict table: [same category] * exp(-(pos - 1) / tau)."""
    n = len(t["hist_cate"][row])
    return np.array([float(c == t["target_cate"][row]) * np.exp(-(n - j - 1) / tau)
                     for j, c in enumerate(t["hist_cate"][row])])


def assert_click_model(t, syn):
    """click_prob = sigmoid(base + quality(item) + w * log1p(sum hist_relevance)): the residual is one constant
    per target item."""
    residual_by_item = {}
    for i, p in enumerate(t["click_prob"]):
        residual = np.log(p / (1 - p)) - syn.base_logit - syn.relevance_weight * np.log1p(sum(t["hist_relevance"][i]))
        residual_by_item.setdefault(t["target_item"][i], []).append(residual)
    assert max(np.ptp(v) for v in residual_by_item.values()) < 1e-4


def test_side_options_off_keep_todays_columns_and_values(tmp_path, tiny_data):
    """With the side effects off, the session knobs are inert: the files equal the default generation's, and
    the columns are today's (no hist_btype)."""
    cfg = tiny_config("--synthetic.behavior_types", "null", "--synthetic.timestamps", "regular",
                      "--synthetic.time_decay_s", "null", "--synthetic.num_objectives", "1",
                      "--synthetic.session_behaviors", "3",
                      "--synthetic.session_gap_s", "5", "--synthetic.session_break_s", "7").synthetic
    meta = generate(cfg, tmp_path, progress=False)
    assert file_hashes(tmp_path) == file_hashes(tiny_data)
    assert meta.columns == schema.DatasetMeta.read(tiny_data).columns
    assert schema.HIST_BTYPE not in meta.columns and meta.params["behavior_types"] is None


def test_behavior_type_weights_scale_relevance_in_the_same_world(tmp_path, tiny_data):
    cfg = tiny_config(*TYPES).synthetic
    meta = generate(cfg, tmp_path, progress=False)
    assert meta.params["behavior_types"] == ["pv", "cart", "fav", "buy"]
    assert meta.columns[-1] == schema.HIST_BTYPE
    t = pq.read_table(tmp_path / "train").to_pydict()
    weights = np.array([0.0, 1.0, 3.0, 2.0, 4.0])  # by hist_btype id
    most_recent = {b: set() for b in range(1, 5)}
    for i in range(len(t["label"])):
        btype = np.array(t["hist_btype"][i], dtype=np.int64)
        np.testing.assert_allclose(t["hist_relevance"][i], position_relevance(t, i, cfg.relevance_decay) *
                                   weights[btype], rtol=1e-6)
        if btype.size and t["hist_cate"][i][-1] == t["target_cate"][i]:
            most_recent[btype[-1]].add(t["hist_relevance"][i][-1])
    # a matching behavior at position 1 (decay 1) is worth its type's weight: cart 3 x pv, buy 4 x pv
    assert most_recent == {1: {1.0}, 2: {3.0}, 3: {2.0}, 4: {4.0}}
    assert_click_model(t, cfg)
    # types are drawn independently (all four occur), from a stream of their own: the world is the default one
    assert set(np.concatenate(t["hist_btype"])) == {1, 2, 3, 4}
    default = pq.read_table(tiny_data / "train", columns=list(WORLD))
    assert pq.read_table(tmp_path / "train", columns=list(WORLD)).equals(default)


def test_session_timestamps_and_time_decay(tmp_path, tiny_data):
    tau = 3600.0
    cfg = tiny_config(*SESSIONS, "--synthetic.time_decay_s", str(tau)).synthetic
    generate(cfg, tmp_path, progress=False)
    t = pq.read_table(tmp_path / "train").to_pydict()
    last_gaps, matched = [], []
    for i in range(len(t["label"])):
        ts, target_ts = np.array(t["hist_ts"][i]), t["target_ts"][i]
        if not ts.size:
            continue
        assert (np.diff(ts) > 0).all() and ts[-1] < target_ts
        factor = np.exp(-(target_ts - ts) / tau)
        base = position_relevance(t, i, cfg.relevance_decay)
        np.testing.assert_allclose(t["hist_relevance"][i], base * factor, rtol=1e-5, atol=1e-30)
        last_gaps.append(target_ts - ts[-1])
        if base[-1] > 0:  # the most recent behavior matches: its relevance is exp(-gap / tau)
            matched.append((target_ts - ts[-1], t["hist_relevance"][i][-1]))
    # bursty: the gap to the most recent behavior is seconds within a session, hours to days after a break
    assert min(last_gaps) < 120 and max(last_gaps) > 86400
    gap, relevance = np.array(matched, dtype=np.float64).T
    order = np.argsort(gap, kind="stable")
    assert (np.diff(relevance[order]) <= 1e-7).all() and relevance.max() > 0.9 and relevance.min() < 1e-3
    assert_click_model(t, cfg)
    default = pq.read_table(tiny_data / "train", columns=list(WORLD))
    assert pq.read_table(tmp_path / "train", columns=list(WORLD)).equals(default)


def test_each_objective_has_its_own_position_decay_in_the_same_world(tiny_objective_data, tiny_data):
    """num_objectives 2: every sample draws objective 1 or 2 (about half each, from a stream of its own) and its
    relevance decays over positions at that objective's rate; the oracle click model holds."""
    cfg = tiny_config(*OBJECTIVES).synthetic
    meta = schema.DatasetMeta.read(tiny_objective_data)
    assert meta.columns[-1] == schema.TARGET_OBJECTIVE
    t = pq.read_table(tiny_objective_data / "train").to_pydict()
    for i in range(len(t["label"])):
        decay = cfg.objective_decays[t["target_objective"][i] - 1]
        np.testing.assert_allclose(t["hist_relevance"][i], position_relevance(t, i, decay), rtol=1e-6)
    counts = np.bincount(t["target_objective"], minlength=3)
    assert counts[0] == 0 and abs(counts[1] - counts[2]) < 0.1 * len(t["label"])
    assert_click_model(t, cfg)
    default = pq.read_table(tiny_data / "train", columns=list(WORLD))
    assert pq.read_table(tiny_objective_data / "train", columns=list(WORLD)).equals(default)


def test_reader_reads_a_dataset_with_both_effects(tmp_path):
    cfg = tiny_config(*TYPES, *SESSIONS, "--synthetic.time_decay_s", "3600")
    meta = generate(cfg.synthetic, tmp_path, progress=False)
    schema.verify_dataset(tmp_path)
    reader = ParquetBatchReader(tmp_path, "train", 256, max_len=cfg.data.max_len)
    assert sum(len(batch.labels) for batch in reader.epoch(0)) == meta.counts["train"]


@pytest.mark.parametrize("overrides,field", [
    (("--synthetic.behavior_type_probs", "[1.0]"), "behavior_type_probs"),
    (TYPES[:2] + ("--synthetic.behavior_type_probs", "[0.5, 0.5, 0.5, 0.5]") + TYPES[4:], "behavior_type_probs"),
    (TYPES[:4] + ("--synthetic.behavior_type_weights", "[1, 2]"), "behavior_type_weights"),
    (("--synthetic.behavior_types", "[pv, pv]"), "behavior_types"),
    (("--synthetic.timestamps", "bursty"), "timestamps"),
    (("--synthetic.time_decay_s", "0"), "time_decay_s"),
    (("--synthetic.num_objectives", "0"), "num_objectives"),
    (("--synthetic.num_objectives", "2"), "objective_decays"),
    (("--synthetic.num_objectives", "2", "--synthetic.objective_decays", "[5, 0]"), "objective_decays"),
    (("--synthetic.objective_decays", "[5]"), "objective_decays"),
])
def test_bad_side_effect_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=f"^synthetic.{field}"):
        tiny_config(*overrides)


# Planted brands, purchase intent and category pairs (docs/side-info.md §3.3, 3.5, 3.6).
BRANDS = ("--synthetic.brands_per_category", "3", "--synthetic.brand_match_weight", "0.25")
INTENT = ("--synthetic.intent_weight", "0.7", "--synthetic.intent_window", "5",
          "--synthetic.intent_types", "[cart, buy]")
PAIRS = ("--synthetic.pair_weight", "1.25", "--synthetic.pair_window", "6")


def logit_residual_by_item(t, syn, extra):
    """Per target item, the click logit minus base, relevance term and ``extra`` ``[R]``: one constant (the item's
    quality) when the click model is base + quality + w * log1p(sum hist_relevance) + extra."""
    p = np.array(t["click_prob"], dtype=np.float64)
    relevance = np.array([sum(r) for r in t["hist_relevance"]])
    residual = np.log(p / (1 - p)) - syn.base_logit - syn.relevance_weight * np.log1p(relevance) - extra
    by_item = {}
    for item, value in zip(t["target_item"], residual):
        by_item.setdefault(item, []).append(value)
    return max(np.ptp(v) for v in by_item.values())


def assert_same_world_and_uniforms(t, default, sign):
    """The world columns equal the default generation's, and the labels come from the same uniforms: where the
    effect moves click_prob by ``sign`` (+1 up, -1 down) a label can only move the same way."""
    for name in WORLD:
        assert t[name] == default[name], name
    moved = sign * (np.array(t["label"], dtype=np.int64) - np.array(default["label"], dtype=np.int64))
    assert (moved >= 0).all()
    p, p0 = np.array(t["click_prob"]), np.array(default["click_prob"])
    assert (sign * (p - p0) >= -1e-7).all() and (np.abs(p - p0) > 1e-3).any()
    assert (np.array(t["label"])[p == p0] == np.array(default["label"])[p == p0]).all()


def test_more_effects_off_keep_todays_files(tmp_path, tiny_data):
    """With brands, intent and pairs off, their other knobs are inert: today's files and columns."""
    cfg = tiny_config("--synthetic.brands_per_category", "null", "--synthetic.brand_match_weight", "0.9",
                      "--synthetic.intent_weight", "0", "--synthetic.intent_window", "3",
                      "--synthetic.pair_weight", "0", "--synthetic.pair_window", "2").synthetic
    meta = generate(cfg, tmp_path, progress=False)
    assert file_hashes(tmp_path) == file_hashes(tiny_data)
    assert meta.columns == schema.DatasetMeta.read(tiny_data).columns
    assert "num_brands" not in meta.params and meta.params["pair_weight"] == 0


def test_brands_nest_in_categories_and_scale_relevance(tmp_path, tiny_data):
    cfg = tiny_config(*BRANDS).synthetic
    meta = generate(cfg, tmp_path, progress=False)
    assert meta.params["num_brands"] == 2 + cfg.num_categories * 3
    assert meta.columns[-2:] == [schema.HIST_BRAND, schema.TARGET_BRAND]
    t = pq.read_table(tmp_path / "train").to_pydict()
    brand_of, matches = {}, set()
    for i in range(len(t["label"])):
        items = list(t["hist_item"][i]) + [t["target_item"][i]]
        cates = np.array(list(t["hist_cate"][i]) + [t["target_cate"][i]])
        brands = np.array(list(t["hist_brand"][i]) + [t["target_brand"][i]])
        # brand b of category c is 2 + (c - 1) * 3 + b: known (>= 2) and inside its item's category
        assert (brands >= 2).all() and ((brands - 2) // 3 + 1 == cates).all()
        for item, brand in zip(items, brands):
            assert brand_of.setdefault(item, brand) == brand  # a brand per item, not per behavior
        same_brand = brands[:-1] == brands[-1]
        factor = 0.25 + 0.75 * same_brand
        np.testing.assert_allclose(t["hist_relevance"][i], position_relevance(t, i, cfg.relevance_decay) * factor,
                                   rtol=1e-6)
        matches.update(zip(cates[:-1] == cates[-1], same_brand))
    # same-category behaviors of the target's brand and of other brands both occur
    assert matches == {(False, False), (True, False), (True, True)}
    assert logit_residual_by_item(t, cfg, 0.0) < 1e-4
    assert_same_world_and_uniforms(t, pq.read_table(tiny_data / "train").to_pydict(), sign=-1)


def test_intent_adds_the_recent_intent_count_to_the_click_logit(tmp_path):
    types_only = tiny_config(*TYPES).synthetic
    generate(types_only, tmp_path / "types", progress=False)
    cfg = tiny_config(*TYPES, *INTENT).synthetic
    meta = generate(cfg, tmp_path / "intent", progress=False)
    assert meta.columns == schema.DatasetMeta.read(tmp_path / "types").columns
    t = pq.read_table(tmp_path / "intent" / "train").to_pydict()
    # cart and buy (ids 2 and 4) among the last 5 behaviors, whatever their category
    counts = np.array([sum(b in (2, 4) for b in btype[-5:]) for btype in t["hist_btype"]])
    assert set(counts) >= {0, 1, 2}
    assert logit_residual_by_item(t, cfg, 0.7 * np.log1p(counts)) < 1e-4
    default = pq.read_table(tmp_path / "types" / "train").to_pydict()
    assert t["hist_relevance"] == default["hist_relevance"] and t["hist_btype"] == default["hist_btype"]
    assert_same_world_and_uniforms(t, default, sign=+1)


def test_pair_bonus_is_paid_exactly_when_both_categories_are_in_the_window(tmp_path, tiny_data):
    cfg = tiny_config(*PAIRS).synthetic
    meta = generate(cfg, tmp_path, progress=False)
    assert meta.columns[-1] == schema.PAIR_BONUS
    t = pq.read_table(tmp_path / "train").to_pydict()
    bonus = np.array(t["pair_bonus"], dtype=np.float64)
    assert set(bonus) == {0.0, 1.25}
    windows = [set(cates[-6:]) for cates in t["hist_cate"]]
    # pi is not stored: recover pi(c) as the one category in the window of every paid sample of target c and in
    # the window of no unpaid sample that holds c
    pi = {}
    for c in range(1, cfg.num_categories + 1):
        paid = [w for w, b, tc in zip(windows, bonus, t["target_cate"]) if tc == c and b > 0]
        unpaid = [w for w, b, tc in zip(windows, bonus, t["target_cate"]) if tc == c and b == 0 and c in w]
        if paid:
            assert all(c in w for w in paid)
            candidates = set.intersection(*paid) - {c} - set().union(*unpaid)
            assert len(candidates) == 1, (c, candidates)
            pi[c] = candidates.pop()
    assert len(pi) >= cfg.num_categories // 2 and len(set(pi.values())) == len(pi)  # a permutation, no fixed point
    # the map rebuilt from the seed (what analyses of the dataset use) is the one the data shows, and it pays
    # every sample's bonus
    planted = planted_pair_map(cfg)
    assert {c: int(planted[c]) for c in pi} == pi
    categories = np.arange(1, cfg.num_categories + 1)
    assert sorted(planted[1:]) == list(categories) and (planted[1:] != categories).all()
    expected = [1.25 * (tc in w and planted[tc] in w) for w, tc in zip(windows, t["target_cate"])]
    np.testing.assert_array_equal(bonus, expected)
    with pytest.raises(ValueError, match="pair_weight is 0"):
        planted_pair_map(tiny_config().synthetic)
    assert t["hist_relevance"] == pq.read_table(tiny_data / "train").to_pydict()["hist_relevance"]
    assert logit_residual_by_item(t, cfg, bonus) < 1e-4
    assert_same_world_and_uniforms(t, pq.read_table(tiny_data / "train").to_pydict(), sign=+1)


def test_reader_reads_a_dataset_with_brands_intent_and_pairs(tmp_path):
    cfg = tiny_config(*TYPES, *BRANDS, *INTENT, *PAIRS)
    meta = generate(cfg.synthetic, tmp_path, progress=False)
    schema.verify_dataset(tmp_path)
    reader = ParquetBatchReader(tmp_path, "train", 256, max_len=cfg.data.max_len, side_fields=("btype",),
                                hard_fields=("brand",))
    assert sum(len(batch.labels) for batch in reader.epoch(0)) == meta.counts["train"]


@pytest.mark.parametrize("overrides,field", [
    (("--synthetic.brands_per_category", "0"), "brands_per_category"),
    (("--synthetic.brand_match_weight", "1.5"), "brand_match_weight"),
    (TYPES + ("--synthetic.intent_weight", "1"), "intent_types"),
    (("--synthetic.intent_types", "[cart]"), "intent_types"),
    (TYPES + ("--synthetic.intent_types", "[cart, checkout]"), "intent_types"),
    (("--synthetic.intent_window", "0"), "intent_window"),
    (("--synthetic.pair_window", "0"), "pair_window"),
])
def test_bad_brand_intent_or_pair_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=f"^synthetic.{field}"):
        tiny_config(*overrides)
