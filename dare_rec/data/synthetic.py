"""Synthetic long-sequence CTR data with planted structure and a known click probability per sample.

The world:

* ``num_items`` items, each in one of ``num_categories`` categories; item popularity is Zipf-like and every
  item has a latent quality ``q_item ~ N(0, item_quality_std)``.
* Each user keeps ``interests_per_user`` interest categories with Dirichlet weights. At every behavior an
  interest is replaced by a random category with probability ``interest_drift`` (interests decay with time);
  a behavior's category is a random category with probability ``exploration``, otherwise one of the
  interests (drawn per behavior; with ``interest_phase`` P > 0, drawn once per phase of P behaviors, so the
  history is a run of single-interest phases and an interest recurs thousands of behaviors later); its item
  follows popularity within the category.
* Samples sit at target slots ``slot_gap`` behaviors apart at the end of the sequence. Every slot gets
  ``candidates_per_slot`` candidate targets sharing its history: with probability ``match_probability`` the
  candidate's category is one of the user's current interests, otherwise it follows global popularity.

The click model (what a perfect model would know)::

    relevance_i = [cate_i == cate_target] * exp(-(pos_i - 1) / decay)    pos_i: 1 = most recent
                  * weight[btype_i]                  (with behavior_types; else 1)
                  * exp(-gap_i / time_decay_s)       (with time_decay_s; gap_i = target_ts - hist_ts_i, seconds)
                  * (rho + (1 - rho) * [brand_i == brand_target])    (with brands_per_category; rho:
                                                                       brand_match_weight)
    logit       = base_logit + q_target + relevance_weight * log(1 + min(sum_i relevance_i, relevance_cap))
                  + intent_weight * log(1 + #{last intent_window behaviors with type in intent_types})
                  + pair_weight * [last pair_window behaviors hold cate_target and pi(cate_target)]
    click_prob  = sigmoid(logit),   label ~ Bernoulli(click_prob)
    decay       = relevance_decay, or objective_decays[o - 1] (with num_objectives; o the target objective)

Planted side information (docs/side-info.md §3, all off by default): with ``behavior_types`` every behavior
draws a type (``hist_btype``, independent of everything else) whose weight scales its relevance; with
``timestamps: sessions`` behaviors come in bursts, so the time gap to the target is not a function of the
position, and ``time_decay_s`` makes interest fade with that gap. With ``brands_per_category`` every item
has a brand of its category (``hist_brand``/``target_brand``) and behaviors of another brand than the
target's count less. With ``num_objectives`` O >= 2 every sample draws a target objective o uniformly from
1..O (``target_objective``) and interest fades over positions at that objective's rate,
``objective_decays[o - 1]`` behaviors (docs/side-info.md §3.4). These four enter through ``relevance_i``, so
``hist_relevance`` and ``click_prob`` carry them. The intent and pair terms depend on several behaviors
together: ``click_prob`` carries them, and the pair term is also written per sample as ``pair_bonus`` (pi, a
random cycle over the categories, is not stored). Their random draws (types, session gaps, objectives, brands,
pi) come from a seed stream of their own per effect, so switching an effect on or off leaves every other draw
(items, categories, targets, the uniforms behind the labels) as it was: an effects-on dataset and its
effects-off twin are the
same world, and with everything off the files are today's, byte for byte.

so the oracle AUC (``click_prob`` as the score) is known, and the truly relevant behaviors of every sample are
stored per behavior in ``hist_relevance``. Everything is vectorised per chunk of users and seeded per chunk,
so the same config and seed give byte-identical files (``users_per_chunk`` users per chunk: it bounds
the generator's memory and is part of the seeding scheme).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, NamedTuple, Optional

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from dare_rec.config import SyntheticConfig
from dare_rec.data import schema
from dare_rec.data.publish import publish_dataset
from dare_rec.data.writer import DatasetWriter, list_array

_SECONDS_PER_BEHAVIOR = 3600.0


class ItemCatalog:
    """Items, their categories, popularity and quality (ids start at 1; 0 is padding).

    Attributes:
        item_cate: ``[num_items + 1]`` category of each item id (entry 0 unused).
        item_quality: ``[num_items + 1]`` latent quality added to the click logit.
        item_brand: ``[num_items + 1]`` brand id of each item (:func:`item_brands`), or None without brands.
        pair_map: ``[num_categories + 1]`` the pair category pi(c) of each category (:func:`pair_map`), or None
            without the pair effect.
    """

    def __init__(self, cfg: SyntheticConfig, rng: np.random.Generator) -> None:
        # Set by generate() from seed streams of their own (None while their effect is off).
        self.item_brand: Optional[np.ndarray] = None
        self.pair_map: Optional[np.ndarray] = None
        n, c = cfg.num_items, cfg.num_categories
        cates = np.concatenate([np.arange(1, c + 1), rng.integers(1, c + 1, size=max(n - c, 0))])[:n]
        rng.shuffle(cates)
        self.item_cate = np.concatenate([[0], cates]).astype(np.int64)
        popularity = 1.0 / np.arange(1, n + 1) ** 0.8
        rng.shuffle(popularity)
        self.item_quality = np.concatenate([[0.0], rng.normal(0.0, cfg.item_quality_std, size=n)])
        # Items sorted by category with cumulative popularity, for vectorised sampling within a category.
        order = np.argsort(cates, kind="stable")
        self._items_by_cate = order + 1
        self._cum = np.cumsum(popularity[order])
        bounds = np.searchsorted(cates[order], np.arange(1, c + 2))
        self._cate_lo = np.concatenate([[0.0], self._cum])[bounds[:-1]]
        self._cate_hi = self._cum[bounds[1:] - 1]
        cate_pop = np.bincount(cates, weights=popularity, minlength=c + 1)[1:]
        self.cate_cum = np.cumsum(cate_pop) / cate_pop.sum()

    def sample_items(self, cates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One item per entry of ``cates`` (any shape), drawn by popularity within that category."""
        lo, hi = self._cate_lo[cates - 1], self._cate_hi[cates - 1]
        point = lo + rng.random(cates.shape) * (hi - lo)
        idx = np.minimum(np.searchsorted(self._cum, point, side="right"), len(self._cum) - 1)
        return self._items_by_cate[idx]

    def sample_popular_categories(self, shape, rng: np.random.Generator) -> np.ndarray:
        return np.searchsorted(self.cate_cum, rng.random(shape), side="right").clip(max=len(self.cate_cum) - 1) + 1


def item_brands(cfg: SyntheticConfig, item_cate: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``[num_items + 1]`` brand of each item (entry 0: 0): one of the ``brands_per_category`` brands of its
    category, uniformly. Brand b (0-based) of category c is id ``2 + (c - 1) * brands_per_category + b``:
    ids are global, nested in the categories, and 1 stays the unknown brand (schema.UNKNOWN_SIDE_ID)."""
    per = cfg.brands_per_category
    local = rng.integers(0, per, size=len(item_cate))
    brands = schema.UNKNOWN_SIDE_ID + 1 + (item_cate - 1) * per + local
    brands[0] = 0
    return brands


def num_brands(cfg: SyntheticConfig) -> int:
    """The brand vocabulary size, counting ids 0 (padding) and 1 (unknown, never written)."""
    return schema.UNKNOWN_SIDE_ID + 1 + cfg.num_categories * cfg.brands_per_category


def pair_map(cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """``[num_categories + 1]`` pi(c) for every category c (entry 0: 0): one random cycle through all
    categories, so pi(c) != c and the pair always takes two behaviors."""
    order = rng.permutation(cfg.num_categories) + 1
    pi = np.zeros(cfg.num_categories + 1, dtype=np.int64)
    pi[order] = np.roll(order, -1)
    return pi


def _intent_term(cfg: SyntheticConfig, hist_btype: np.ndarray, recency: np.ndarray, row_of_value: np.ndarray,
                 num_rows: int) -> np.ndarray:
    """``[R]`` intent term of each row's click logit: intent_weight * log(1 + the number of the row's last
    intent_window behaviors whose type is one of intent_types). Inputs are the flat history values ``[V]``
    (recency 1 = most recent) and their row."""
    intent_ids = [cfg.behavior_types.index(name) + 1 for name in cfg.intent_types]
    counted = np.isin(hist_btype, intent_ids) & (recency <= cfg.intent_window)
    return cfg.intent_weight * np.log1p(np.bincount(row_of_value, weights=counted, minlength=num_rows))


def _pair_term(cfg: SyntheticConfig, pi: np.ndarray, hist_cate: np.ndarray, tgt_cate: np.ndarray,
               recency: np.ndarray, row_of_value: np.ndarray) -> np.ndarray:
    """``[R]`` pair term of each row's click logit: pair_weight where the row's last pair_window behaviors hold
    both the target's category and pi(target category), else 0. Inputs as :func:`_intent_term`, tgt_cate
    ``[R]``."""
    recent = recency <= cfg.pair_window
    rows = len(tgt_cate)
    has_target = np.bincount(row_of_value, weights=recent & (hist_cate == tgt_cate[row_of_value]), minlength=rows)
    has_pair = np.bincount(row_of_value, weights=recent & (hist_cate == pi[tgt_cate][row_of_value]), minlength=rows)
    return cfg.pair_weight * ((has_target > 0) & (has_pair > 0))


def _session_gaps(cfg: SyntheticConfig, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """``shape`` float gaps (seconds) before each behavior under ``timestamps: sessions``: a behavior opens a new
    session with probability 1 / session_behaviors (so sessions hold session_behaviors behaviors on average)
    and then follows a break of mean session_break_s; otherwise it follows its predecessor by a gap of mean
    session_gap_s."""
    opens_session = rng.random(shape) < 1.0 / cfg.session_behaviors
    inside = rng.exponential(cfg.session_gap_s, size=shape)
    between = rng.exponential(cfg.session_break_s, size=shape)
    return np.where(opens_session, between, inside)


def _simulate_users(cfg: SyntheticConfig, catalog: ItemCatalog, num_users: int, rng: np.random.Generator,
                    btype_rng: np.random.Generator, time_rng: np.random.Generator):
    """Behavior sequences of a chunk of users.

    ``btype_rng`` and ``time_rng`` draw the behavior types and the session timestamps only (unused when those
    options are off), so ``rng``'s stream is the same with the options on or off.

    Returns:
        item, cate, ts ``[U, M]`` (user u's sequence is valid up to slot_index[u, -1]); btype ``[U, M]`` int64
        type ids 1..T (None without behavior_types); slot_index ``[U, S]`` (sequence index of each target
        slot); slot_interests ``[U, S, I]`` (interests at each slot) and cumulative interest weights ``[U, I]``.
    """
    num_slots = cfg.train_slots + 2
    first_slot = rng.integers(cfg.min_history, cfg.max_history + 1, size=num_users)
    slot_index = first_slot[:, None] + cfg.slot_gap * np.arange(num_slots)[None, :]
    max_m = int(slot_index[:, -1].max()) + 1
    n_int = cfg.interests_per_user
    # Distinct initial interests per user: the first n_int of a random permutation of categories.
    interests = np.argsort(rng.random((num_users, cfg.num_categories)), axis=1)[:, :n_int] + 1
    weights = rng.dirichlet(np.ones(n_int), size=num_users)
    cum_weights = np.cumsum(weights, axis=1)
    cates = np.zeros((num_users, max_m), dtype=np.int64)
    slot_interests = np.zeros((num_users, num_slots, n_int), dtype=np.int64)
    rows = np.arange(num_users)
    for m in range(max_m):
        # Snapshot interests at target slots (before the slot's own behavior happens).
        at_slot = slot_index == m
        if at_slot.any():
            u, s = np.nonzero(at_slot)
            slot_interests[u, s] = interests[u]
        drift = rng.random(num_users) < cfg.interest_drift
        replace_at = rng.integers(0, n_int, size=num_users)
        new_cate = rng.integers(1, cfg.num_categories + 1, size=num_users)
        interests[rows[drift], replace_at[drift]] = new_cate[drift]
        if not cfg.interest_phase or m % cfg.interest_phase == 0:
            pick = (rng.random(num_users)[:, None] > cum_weights).sum(axis=1).clip(max=n_int - 1)
        explore = rng.random(num_users) < cfg.exploration
        random_cate = rng.integers(1, cfg.num_categories + 1, size=num_users)
        cates[:, m] = np.where(explore, random_cate, interests[rows, pick])
    items = catalog.sample_items(np.maximum(cates, 1), rng)
    # Drawn even under sessions, which replace them, so that rng's later draws do not depend on the option.
    gaps = rng.exponential(_SECONDS_PER_BEHAVIOR, size=(num_users, max_m))
    if cfg.timestamps == "sessions":
        gaps = _session_gaps(cfg, gaps.shape, time_rng)
    # + 1 s: every behavior strictly after its predecessor, so a history ends before its target.
    ts = rng.integers(0, 10**6, size=num_users)[:, None] + np.cumsum(gaps.astype(np.int64) + 1, axis=1)
    btype = None
    if cfg.behavior_types is not None:
        cum_probs = np.cumsum(cfg.behavior_type_probs)
        draw = btype_rng.random((num_users, max_m)) * cum_probs[-1]
        btype = np.searchsorted(cum_probs, draw, side="right").clip(max=len(cum_probs) - 1) + 1
    return items, cates, ts, btype, slot_index, slot_interests, cum_weights


def _chunk_rows(cfg: SyntheticConfig, catalog: ItemCatalog, user_offset: int, num_users: int,
                rng: np.random.Generator, btype_rng: np.random.Generator, time_rng: np.random.Generator,
                objective_rng: np.random.Generator) -> Dict[str, Dict[str, pa.Array]]:
    """All samples of a chunk of users as Arrow columns per split (train rows shuffled); the side generators
    as in :func:`_simulate_users`, and ``objective_rng`` for the samples' target objectives only."""
    items, cates, ts, btype, slot_index, slot_interests, cum_weights = _simulate_users(
        cfg, catalog, num_users, rng, btype_rng, time_rng)
    num_slots = slot_index.shape[1]
    n_cand = cfg.candidates_per_slot
    max_m = items.shape[1]

    # Candidate targets: [U, S, C].
    shape = (num_users, num_slots, n_cand)
    pick = (rng.random(shape)[..., None] > cum_weights[:, None, None, :]).sum(-1).clip(max=cfg.interests_per_user - 1)
    interest_cate = np.take_along_axis(slot_interests, pick, axis=2)
    matched = rng.random(shape) < cfg.match_probability
    target_cate = np.where(matched, interest_cate, catalog.sample_popular_categories(shape, rng))
    target_item = catalog.sample_items(target_cate, rng)

    # One row per (user, slot, candidate); histories are the behaviors before the slot, at most max_history.
    row_user = np.repeat(np.arange(num_users), num_slots * n_cand)
    row_slot = np.tile(np.repeat(np.arange(num_slots), n_cand), num_users)
    end = slot_index[row_user, row_slot]
    start = np.maximum(end - cfg.max_history, 0)
    lengths = end - start
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    row_of_value = np.repeat(np.arange(len(lengths)), lengths)
    seq_pos = np.arange(offsets[-1]) - offsets[:-1][row_of_value] + start[row_of_value]
    flat = row_user[row_of_value] * max_m + seq_pos
    hist_item, hist_cate, hist_ts = items.ravel()[flat], cates.ravel()[flat], ts.ravel()[flat]

    tgt_item, tgt_cate = target_item.ravel(), target_cate.ravel()
    tgt_ts = ts[row_user, end]
    recency = end[row_of_value] - seq_pos  # 1 = most recent behavior
    decay = cfg.relevance_decay
    if cfg.objectives_on:  # each sample's objective sets how fast interest fades with position
        objective = objective_rng.integers(1, cfg.num_objectives + 1, size=len(lengths))
        decay = np.asarray(cfg.objective_decays, dtype=np.float64)[objective - 1][row_of_value]
    relevance = (hist_cate == tgt_cate[row_of_value]) * np.exp(-(recency - 1) / decay)
    # The planted side effects scale each behavior's relevance, so hist_relevance and the oracle carry them.
    if btype is not None:
        hist_btype = btype.ravel()[flat]
        relevance = relevance * np.asarray(cfg.behavior_type_weights)[hist_btype - 1]
    if cfg.time_decay_s is not None:
        relevance = relevance * np.exp(-(tgt_ts[row_of_value] - hist_ts) / cfg.time_decay_s)
    if catalog.item_brand is not None:
        # Brands nest in categories, so a brand match is a category match: other brands count rho of it.
        hist_brand, tgt_brand = catalog.item_brand[hist_item], catalog.item_brand[tgt_item]
        rho = cfg.brand_match_weight
        relevance = relevance * (rho + (1.0 - rho) * (hist_brand == tgt_brand[row_of_value]))
    total_relevance = np.bincount(row_of_value, weights=relevance, minlength=len(lengths))
    if cfg.relevance_cap is not None:
        total_relevance = np.minimum(total_relevance, cfg.relevance_cap)
    logit = cfg.base_logit + catalog.item_quality[tgt_item] + cfg.relevance_weight * np.log1p(total_relevance)
    # The sample-level terms (not a sum over single behaviors, so not in hist_relevance).
    if cfg.intent_weight:
        logit = logit + _intent_term(cfg, hist_btype, recency, row_of_value, len(lengths))
    if catalog.pair_map is not None:
        pair_bonus = _pair_term(cfg, catalog.pair_map, hist_cate, tgt_cate, recency, row_of_value)
        logit = logit + pair_bonus
    click_prob = 1.0 / (1.0 + np.exp(-logit))
    label = (rng.random(len(logit)) < click_prob).astype(np.int8)

    columns = {
        schema.USER_ID: pa.array(row_user.astype(np.int64) + user_offset + 1),
        schema.TARGET_ITEM: pa.array(tgt_item.astype(np.int64)),
        schema.TARGET_CATE: pa.array(tgt_cate.astype(np.int64)),
        schema.LABEL: pa.array(label),
        schema.HIST_ITEM: list_array(offsets, hist_item.astype(np.int64), pa.int64()),
        schema.HIST_CATE: list_array(offsets, hist_cate.astype(np.int64), pa.int64()),
        schema.HIST_TS: list_array(offsets, hist_ts.astype(np.int64), pa.int64()),
        schema.TARGET_TS: pa.array(tgt_ts.astype(np.int64)),
        schema.CLICK_PROB: pa.array(click_prob.astype(np.float32)),
        schema.HIST_RELEVANCE: list_array(offsets, relevance.astype(np.float32), pa.float32()),
    }
    if btype is not None:
        columns[schema.HIST_BTYPE] = list_array(offsets, hist_btype.astype(np.int64), pa.int64())
    if catalog.item_brand is not None:
        columns[schema.HIST_BRAND] = list_array(offsets, hist_brand.astype(np.int64), pa.int64())
        columns[schema.TARGET_BRAND] = pa.array(tgt_brand.astype(np.int64))
    if catalog.pair_map is not None:
        columns[schema.PAIR_BONUS] = pa.array(pair_bonus.astype(np.float32))
    if cfg.objectives_on:
        columns[schema.TARGET_OBJECTIVE] = pa.array(objective.astype(np.int64))
    split_of_slot = np.array(["train"] * (num_slots - 2) + ["val", "test"])
    row_split = split_of_slot[row_slot]
    out: Dict[str, Dict[str, pa.Array]] = {}
    for split in schema.SPLITS:
        idx = np.nonzero(row_split == split)[0]
        if split == "train":
            idx = rng.permutation(idx)
        take = pa.array(idx)
        out[split] = {name: col.take(take) for name, col in columns.items()}
    return out


class WorldSeeds(NamedTuple):
    """The generator's independent random streams, all drawn from ``synthetic.seed``: the item catalog, the
    users' chunks, the per-behavior side effects (types, times, objectives), and the world-level side structure
    (the items' brands, the category pairs)."""

    catalog: np.random.SeedSequence
    chunks: np.random.SeedSequence
    side: np.random.SeedSequence
    brand: np.random.SeedSequence
    pair: np.random.SeedSequence


def world_seeds(seed: int) -> WorldSeeds:
    """The streams of a world generated with ``seed``. The third (the side effects') was added later:
    spawn(3)'s first two children are spawn(2)'s, so the catalog and chunk streams, and hence the files of
    worlds without side effects, did not move; the fourth (the world-level side structure, split into brands and
    pairs) was added later still, likewise."""
    catalog, chunks, side, world_side = np.random.SeedSequence(seed).spawn(4)
    brand, pair = world_side.spawn(2)
    return WorldSeeds(catalog, chunks, side, brand, pair)


def planted_pair_map(cfg: SyntheticConfig) -> np.ndarray:
    """``[num_categories + 1]`` the category pairs pi of the world ``cfg`` describes (its ``pair_weight`` on):
    the map :func:`generate` planted, rebuilt from the seed (analyses of a dataset read it from meta.json's
    params)."""
    if not cfg.pair_weight:
        raise ValueError("synthetic.pair_weight is 0: the world has no category pairs")
    return pair_map(cfg, np.random.default_rng(world_seeds(cfg.seed).pair))


def generate(cfg: SyntheticConfig, out_dir: str | Path, progress: bool = True,
             overwrite: bool = False) -> schema.DatasetMeta:
    """Writes the synthetic dataset described by ``cfg`` to ``out_dir`` and returns its meta.json contents.

    The dataset replaces ``out_dir`` atomically once complete (:func:`dare_rec.data.publish.publish_dataset`;
    ``overwrite`` lets it replace a folder that is not a dataset of ours).
    """
    started = time.perf_counter()
    seeds = world_seeds(cfg.seed)
    with publish_dataset(out_dir, overwrite) as tmp:
        catalog = ItemCatalog(cfg, np.random.default_rng(seeds.catalog))
        if cfg.brands_per_category is not None:
            catalog.item_brand = item_brands(cfg, catalog.item_cate, np.random.default_rng(seeds.brand))
        if cfg.pair_weight:
            catalog.pair_map = pair_map(cfg, np.random.default_rng(seeds.pair))
        optional = [schema.HIST_TS, schema.TARGET_TS, schema.CLICK_PROB, schema.HIST_RELEVANCE]
        if cfg.behavior_types is not None:
            optional.append(schema.HIST_BTYPE)
        if cfg.brands_per_category is not None:
            optional += [schema.HIST_BRAND, schema.TARGET_BRAND]
        if cfg.pair_weight:
            optional.append(schema.PAIR_BONUS)
        if cfg.objectives_on:
            optional.append(schema.TARGET_OBJECTIVE)
        writer = DatasetWriter(tmp, optional, {"train": cfg.train_files, "val": 1, "test": 1}, cfg.row_group_size,
                               cfg.row_group_mb << 20)
        num_chunks = -(-cfg.num_users // cfg.users_per_chunk)
        chunk_seeds = seeds.chunks.spawn(num_chunks)
        side_seeds = seeds.side.spawn(num_chunks)
        for chunk in tqdm(range(num_chunks), desc="generate synthetic users", unit="chunk", disable=not progress):
            offset = chunk * cfg.users_per_chunk
            n = min(cfg.users_per_chunk, cfg.num_users - offset)
            # One stream per side effect, so any can be switched without moving the others' draws (spawn(3)'s
            # first two children are spawn(2)'s: adding the objectives' stream moved nothing).
            btype_rng, time_rng, objective_rng = (np.random.default_rng(s) for s in side_seeds[chunk].spawn(3))
            rows = _chunk_rows(cfg, catalog, offset, n, np.random.default_rng(chunk_seeds[chunk]), btype_rng,
                               time_rng, objective_rng)
            writer.write("train", rows["train"], file_index=chunk % cfg.train_files)
            writer.write("val", rows["val"])
            writer.write("test", rows["test"])
        files = writer.close()
        params = asdict(cfg)
        if cfg.brands_per_category is not None:
            params["num_brands"] = num_brands(cfg)  # the brand vocabulary, as prepare records it for real logs
        meta = schema.DatasetMeta(
            source="synthetic",
            num_items=cfg.num_items + 1,
            num_categories=cfg.num_categories + 1,
            max_history=writer.max_history,
            counts=writer.counts,
            seed=cfg.seed,
            columns=[f.name for f in writer.schema],
            files=files,
            params=params,
        )
        meta.write(tmp)
    if progress:
        print(f"wrote {sum(meta.counts.values()):,} samples {meta.counts} to {out_dir} "
              f"in {time.perf_counter() - started:.1f}s")
    return meta
