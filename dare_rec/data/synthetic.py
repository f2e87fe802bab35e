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
                  decay = relevance_decay, or objective_decays[o - 1] (with num_objectives; o the target objective)
                  * weight[btype_i]                  (with behavior_types; else 1)
                  * exp(-gap_i / time_decay_s)       (with time_decay_s; gap_i = target_ts - hist_ts_i, seconds)
    logit       = base_logit + q_target + relevance_weight * log(1 + min(sum_i relevance_i, relevance_cap))
    click_prob  = sigmoid(logit),   label ~ Bernoulli(click_prob)

Planted side information (docs/side-info.md §3, all off by default): with ``behavior_types`` every behavior
draws a type (``hist_btype``, independent of everything else) whose weight scales its relevance; with
``timestamps: sessions`` behaviors come in bursts, so the time gap to the target is not a function of the
position, and ``time_decay_s`` makes interest fade with that gap. With ``num_objectives`` O >= 2 every sample
draws a target objective o uniformly from 1..O (``target_objective``) and interest fades over positions at that
objective's rate, ``objective_decays[o - 1]`` behaviors (docs/side-info.md §3.4). The effects enter through
``relevance_i``, so ``hist_relevance`` and ``click_prob`` carry them. Their random draws come from a seed
stream of their own per effect, so switching an effect on or off leaves every other draw (items, categories,
targets, the uniforms behind the labels) as it was: an effects-on dataset and its effects-off twin are the
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
from typing import Dict

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
    """

    def __init__(self, cfg: SyntheticConfig, rng: np.random.Generator) -> None:
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
    total_relevance = np.bincount(row_of_value, weights=relevance, minlength=len(lengths))
    if cfg.relevance_cap is not None:
        total_relevance = np.minimum(total_relevance, cfg.relevance_cap)
    logit = cfg.base_logit + catalog.item_quality[tgt_item] + cfg.relevance_weight * np.log1p(total_relevance)
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


def generate(cfg: SyntheticConfig, out_dir: str | Path, progress: bool = True,
             overwrite: bool = False) -> schema.DatasetMeta:
    """Writes the synthetic dataset described by ``cfg`` to ``out_dir`` and returns its meta.json contents.

    The dataset replaces ``out_dir`` atomically once complete (:func:`dare_rec.data.publish.publish_dataset`;
    ``overwrite`` lets it replace a folder that is not a dataset of ours).
    """
    started = time.perf_counter()
    root_seq = np.random.SeedSequence(cfg.seed)
    # The third stream (the side effects') was added later: spawn(3)'s first two children are spawn(2)'s, so
    # the catalog and chunk streams, and hence today's files, are unchanged.
    catalog_seed, chunks_seed, side_seed = root_seq.spawn(3)
    with publish_dataset(out_dir, overwrite) as tmp:
        catalog = ItemCatalog(cfg, np.random.default_rng(catalog_seed))
        optional = [schema.HIST_TS, schema.TARGET_TS, schema.CLICK_PROB, schema.HIST_RELEVANCE]
        if cfg.behavior_types is not None:
            optional.append(schema.HIST_BTYPE)
        if cfg.objectives_on:
            optional.append(schema.TARGET_OBJECTIVE)
        writer = DatasetWriter(tmp, optional, {"train": cfg.train_files, "val": 1, "test": 1}, cfg.row_group_size,
                               cfg.row_group_mb << 20)
        num_chunks = -(-cfg.num_users // cfg.users_per_chunk)
        chunk_seeds = chunks_seed.spawn(num_chunks)
        side_seeds = side_seed.spawn(num_chunks)
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
        meta = schema.DatasetMeta(
            source="synthetic",
            num_items=cfg.num_items + 1,
            num_categories=cfg.num_categories + 1,
            max_history=writer.max_history,
            counts=writer.counts,
            seed=cfg.seed,
            columns=[f.name for f in writer.schema],
            files=files,
            params=asdict(cfg),
        )
        meta.write(tmp)
    if progress:
        print(f"wrote {sum(meta.counts.values()):,} samples {meta.counts} to {out_dir} "
              f"in {time.perf_counter() - started:.1f}s")
    return meta
