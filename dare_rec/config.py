"""Typed configuration: dataclasses, YAML presets and dotted command-line overrides.

A run is described by one :class:`Config` (sections ``synthetic``, ``logs``, ``data``, ``model``,
``sharding``, ``train``). Presets live in ``configs/*.yaml``; any field can be overridden on the command line
as ``--section.field value`` (``--model.d_att 32``, ``--sharding.tables.item_rep.sharding_type row_wise``).
Values are parsed as YAML scalars/lists (``true``, ``null``, ``[200, 80]``) and type-checked against the
dataclass annotation, so a typo fails with the dotted name of the offending field.

:meth:`Config.validate` checks every value that can be checked without data or a process group (each section's
dataclass validates its own fields, then the rules that span sections) and raises :class:`ConfigError` naming the
field, so bad configuration fails before any training starts.

Why not OmegaConf structured configs (compared for issue 19, omegaconf 2.3): they would replace the coercion
below, but their errors are multi-line (``full_key``, ``reference_type``, ``object_type``), an unknown key does not
list the known ones, value ranges and choices still need these checks, and the ``--section.field VALUE`` command
line would become ``section.field=VALUE``; the errors here are one line that starts with the dotted name.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from dare_rec.data.side import DEFAULT_TIME_GAP_BUCKETS, MAX_TIME_GAP_BUCKETS
from dare_rec.metrics.offline import METRIC_HIGHER_IS_BETTER
from dare_rec.modules.variants import AXES, VARIANTS, ModelSpec
from dare_rec.ops.kernel import Kernel, UpdateKernel

OP_KERNELS = tuple(kernel.value for kernel in Kernel)
UPDATE_KERNELS = tuple(kernel.value for kernel in UpdateKernel)
SHARDING_TYPES = ("table_wise", "row_wise", "column_wise", "table_column_wise")
COMPUTE_KERNELS = ("fused", "fused_uvm", "fused_uvm_caching")
TABLE_DATA_TYPES = ("fp32", "fp16")
RESUME_MODES = ("auto", "never")
# Optimizers of the embedding tables (train.sparse_optimizer). All but dense_adam run inside the backward pass
# of the sharded tables and update only the rows looked up in the step: FBGEMM's kernels, except Adam on CPU
# (dare_rec/cpu_adam.py; FBGEMM's CUDA Adam on CUDA, same semantics) and partial row-wise Adam (one
# second-moment value per row; CUDA only). dense_adam is the reference code's recipe: the tables are
# replicated on every rank (data-parallel) and trained by the dense Adam with the rest of the model, so every
# row moves every step (its moments keep decaying); memory: the whole tables plus two Adam moments per weight
# on every rank.
SPARSE_OPTIMIZERS = ("rowwise_adagrad", "adagrad", "sgd", "adam", "rowwise_adam", "dense_adam")
CUDA_ONLY_SPARSE_OPTIMIZERS = ("rowwise_adam",)
DENSE_ADAM = "dense_adam"
# How the sharded tables are read (dare_rec/modules/embeddings.py): EmbeddingCollections (FBGEMM sequence
# kernels) or EmbeddingBagCollections with one bag per id (pooled kernels; ~7x faster backward on CPU).
SEQUENCE_LOOKUP = "sequence"
SINGLETON_BAGS = "singleton_bags"
LOOKUPS = ("auto", SEQUENCE_LOOKUP, SINGLETON_BAGS)


def resolve_lookup(lookup: str, device_type: str) -> str:
    """``auto`` -> singleton_bags on CPU, sequence on CUDA (where FBGEMM's sequence kernels are the fast ones)."""
    if lookup != "auto":
        return lookup
    return SEQUENCE_LOOKUP if device_type == "cuda" else SINGLETON_BAGS


# TorchRec train pipelines: sparse_dist overlaps the next batch's input distribution with the step; prefetch
# (CUDA only, for fused_uvm_caching tables) also prefetches the next batch's cache rows on a side stream.
TRAIN_PIPELINES = ("sparse_dist", "prefetch")
# Longest history (behaviors per sample) a dataset may store and the model may search: the regime the memory
# bounds (aux_behaviors, the chunked GSU) and the long-history benchmarks cover (docs/performance.md).
MAX_HISTORY_LIMIT = 10_000
# Legal values of model.side_fields (docs/side-info.md §2.0): btype, a small dense table per table group, and the
# semantic fields seller and brand (SEMANTIC_SIDE_FIELDS), sharded tables next to item and category.
SIDE_FIELDS = ("btype", "seller", "brand")
# The side fields with tables like item's and category's, in the order their blocks follow [item; cate] in e^A and
# e^R (docs/side-info.md §2.0).
SEMANTIC_SIDE_FIELDS = ("seller", "brand")
# Legal values of model.esu_layers: one TIN layer, or stacked TIN's two (docs/side-info.md §2.6).
ESU_LAYERS = (1, 2)
# Legal levels of model.hard_levels (docs/side-info.md §2.3): each compares one id of a behavior with the target's.
HARD_LEVELS = ("cate", "brand", "seller")
# Legal values of model.hard_fill: how hard search fills the slots left when fewer than K behaviors match.
HARD_FILLS = ("recent", "soft")
# Legal values of model.temporal_merge (docs/side-info.md §2.1): how the dense side tables (time gap, behavior type)
# meet the semantic vector: per-field terms next to it (concat), or added to it (add, TIN's sum). Positions are a
# term and a block of their own under both.
TEMPORAL_MERGES = ("concat", "add")


class ConfigError(ValueError):
    """A configuration value is invalid; the message starts with the dotted field name."""


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: {message}")


def _positive(section: Any, prefix: str, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        _require(value > 0, f"{prefix}.{name}", f"must be > 0, got {value}")


def _at_most_history_limit(section: Any, prefix: str, name: str) -> None:
    value = getattr(section, name)
    _require(value <= MAX_HISTORY_LIMIT, f"{prefix}.{name}",
             f"must be <= {MAX_HISTORY_LIMIT:,} (the longest history dare_rec supports), got {value:,}")


def _non_negative(section: Any, prefix: str, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        _require(value >= 0, f"{prefix}.{name}", f"must be >= 0, got {value}")


def _one_of(value: Any, name: str, choices: Sequence[Any], what: str, null_ok: bool = False) -> None:
    _require(value in choices or (null_ok and value is None), name,
             f"unknown {what} {value!r}; choose one of {tuple(choices)}" + (" or null" if null_ok else ""))


# synthetic.timestamps: today's regularly spaced behaviors, or bursty sessions (dare_rec.data.synthetic).
SYNTHETIC_TIMESTAMPS = ("regular", "sessions")


@dataclass
class SyntheticConfig:
    """Parameters of the synthetic generator with planted structure (``dare-rec prepare --source synthetic``).

    Users have a few interest categories that drift over time; every sample's click probability is a known
    function of how its target relates to its history (see dare_rec.data.synthetic).
    """

    num_users: int = 12000
    num_items: int = 20000
    num_categories: int = 200
    min_history: int = 20
    max_history: int = 200
    # Target slots per user, slot_gap behaviors apart: the last is test, the one before val, the rest
    # train (oldest first). A slot's history is everything before it, capped at max_history.
    train_slots: int = 8
    slot_gap: int = 5
    candidates_per_slot: int = 3
    interests_per_user: int = 4
    interest_drift: float = 0.02
    # 0: every behavior draws one of the user's current interests. > 0: the long-history world: behaviors
    # come in phases of this many, each devoted to one interest drawn at its start, so an interest recurs
    # thousands of behaviors after it was last seen (configs/long_history.yaml).
    interest_phase: int = 0
    exploration: float = 0.1
    relevance_decay: float = 20.0
    relevance_weight: float = 2.0
    # Caps the summed relevance in the click logit (null: no cap): with a cap of about top_k, what decides a
    # click is whether the target's interest is in the history at all, which a top-K search can see.
    relevance_cap: Optional[float] = None
    item_quality_std: float = 0.5
    base_logit: float = -1.2
    match_probability: float = 0.5
    # Planted side information (docs/side-info.md §3; all off by default, which leaves the files of today's
    # presets byte-identical). Behavior types: null, or names written as hist_btype ids 1..T in this order and
    # recorded in meta.json params["behavior_types"]; each history behavior draws a type with
    # behavior_type_probs, independently of everything else, and its relevance is multiplied by its type's
    # behavior_type_weights entry (so cart/buy can count more than pv).
    behavior_types: Optional[List[str]] = None
    behavior_type_probs: Optional[List[float]] = None
    behavior_type_weights: Optional[List[float]] = None
    # Timestamps: "regular" (today's: exponential gaps of mean 3600 s, so the time gap to the target is about a
    # multiple of the position) or "sessions" (bursty: a behavior starts a new session with probability
    # 1 / session_behaviors; gaps are exponential with mean session_gap_s inside a session and session_break_s
    # between sessions, so the time gap is not a function of the position).
    timestamps: str = "regular"
    session_behaviors: float = 8.0
    session_gap_s: float = 60.0
    session_break_s: float = 86400.0
    # null, or the interest decay over the time gap: relevance is also multiplied by exp(-gap / time_decay_s),
    # gap = target_ts - hist_ts in seconds.
    time_decay_s: Optional[float] = None
    # Brands (null: none): every item gets one of this many brands of its category (global ids 2.. in
    # hist_brand/target_brand, 1 being the unknown brand), and a same-category behavior counts
    # brand_match_weight + (1 - brand_match_weight) * [same brand as the target] of its relevance.
    brands_per_category: Optional[int] = None
    brand_match_weight: float = 0.3
    # Purchase intent (0: off; needs behavior_types): the click logit gains
    # intent_weight * log(1 + #{the last intent_window behaviors whose type is in intent_types}), whatever
    # their category, so recent carts/buys of other categories raise every candidate of the sample.
    intent_weight: float = 0.0
    intent_window: int = 10
    intent_types: Optional[List[str]] = None
    # Category pairs (0: off): a fixed random cycle pi over the categories; the click logit gains pair_weight
    # when the last pair_window behaviors hold both the target's category and pi(target category), written
    # per sample as pair_bonus.
    pair_weight: float = 0.0
    pair_window: int = 20
    # Target objectives (docs/side-info.md §3.4): null or 1, off; O >= 2, every sample draws an objective 1..O
    # uniformly (written as target_objective) and its relevance decays over positions with that objective's
    # objective_decays entry (in behaviors) instead of relevance_decay, so objectives differ in how fast
    # interest fades with position.
    num_objectives: Optional[int] = None
    objective_decays: Optional[List[float]] = None
    row_group_size: int = 8192
    # A row group also closes at this many MiB (uncompressed): bounds reader memory for long histories.
    row_group_mb: int = 64
    # Users simulated together (bounds the generator's memory: a chunk holds all of its users' samples).
    # Part of the seeding scheme: another value gives other (equally distributed) data.
    users_per_chunk: int = 2048
    train_files: int = 4
    seed: int = 0

    def validate(self, prefix: str = "synthetic") -> None:
        _positive(self, prefix, "num_users", "num_items", "num_categories", "train_slots", "slot_gap",
                  "candidates_per_slot", "interests_per_user", "row_group_size", "row_group_mb", "users_per_chunk",
                  "train_files", "relevance_decay")
        _non_negative(self, prefix, "min_history", "interest_phase")
        _require(self.max_history >= max(self.min_history, 1), f"{prefix}.max_history",
                 f"must be >= 1 and >= {prefix}.min_history ({self.min_history}), got {self.max_history}")
        _at_most_history_limit(self, prefix, "max_history")
        _require(self.interests_per_user <= self.num_categories, f"{prefix}.interests_per_user",
                 f"must be <= {prefix}.num_categories ({self.num_categories}), got {self.interests_per_user}")
        _require(self.relevance_cap is None or self.relevance_cap > 0, f"{prefix}.relevance_cap",
                 f"must be > 0 or null, got {self.relevance_cap}")
        for name in ("interest_drift", "exploration", "match_probability"):
            value = getattr(self, name)
            _require(0.0 <= value <= 1.0, f"{prefix}.{name}", f"must be in [0, 1], got {value}")
        self._validate_side_effects(prefix)

    def _validate_side_effects(self, prefix: str) -> None:
        """The planted side-information fields: the type lists agree, the timestamps model is known."""
        types = self.behavior_types
        lists = ("behavior_type_probs", "behavior_type_weights")
        if types is None:
            for name in lists:
                _require(getattr(self, name) is None, f"{prefix}.{name}",
                         f"needs {prefix}.behavior_types (a list of type names), which is null")
        else:
            _require(len(types) > 0 and len(set(types)) == len(types) and all(types), f"{prefix}.behavior_types",
                     f"must be a non-empty list of distinct non-empty names, got {types}")
            for name in lists:
                value = getattr(self, name)
                _require(value is not None and len(value) == len(types), f"{prefix}.{name}",
                         f"must list one number per behavior type ({len(types)}: {types}), got {value}")
                _require(all(v >= 0 for v in value), f"{prefix}.{name}", f"must be >= 0, got {value}")
            probs = self.behavior_type_probs
            _require(abs(sum(probs) - 1.0) < 1e-6, f"{prefix}.behavior_type_probs",
                     f"must sum to 1, got {probs} (sum {sum(probs)})")
        _one_of(self.timestamps, f"{prefix}.timestamps", SYNTHETIC_TIMESTAMPS, "timestamps model")
        _positive(self, prefix, "session_gap_s", "session_break_s")
        _require(self.session_behaviors >= 1, f"{prefix}.session_behaviors",
                 f"must be >= 1 (mean behaviors per session), got {self.session_behaviors}")
        _require(self.time_decay_s is None or self.time_decay_s > 0, f"{prefix}.time_decay_s",
                 f"must be > 0 or null, got {self.time_decay_s}")
        _require(self.num_objectives is None or self.num_objectives >= 1, f"{prefix}.num_objectives",
                 f"must be >= 1 or null, got {self.num_objectives}")
        decays = self.objective_decays
        if self.objectives_on:
            _require(decays is not None and len(decays) == self.num_objectives and all(d > 0 for d in decays),
                     f"{prefix}.objective_decays", f"must list one position decay > 0 per objective "
                     f"({self.num_objectives}), got {decays}")
        else:
            _require(decays is None, f"{prefix}.objective_decays",
                     f"needs {prefix}.num_objectives >= 2, got {self.num_objectives}")
        self._validate_more_effects(prefix)

    def _validate_more_effects(self, prefix: str) -> None:
        """The planted brand, intent and pair fields (docs/side-info.md §3.3, 3.5, 3.6)."""
        _require(self.brands_per_category is None or self.brands_per_category >= 1,
                 f"{prefix}.brands_per_category", f"must be >= 1 or null, got {self.brands_per_category}")
        _require(0.0 <= self.brand_match_weight <= 1.0, f"{prefix}.brand_match_weight",
                 f"must be in [0, 1], got {self.brand_match_weight}")
        _positive(self, prefix, "intent_window", "pair_window")
        _require(self.intent_weight == 0 or self.intent_types is not None, f"{prefix}.intent_types",
                 f"must list behavior types when {prefix}.intent_weight is not 0 ({self.intent_weight}), got null")
        if self.intent_types is not None:
            types = self.behavior_types or []
            _require(len(self.intent_types) > 0 and set(self.intent_types) <= set(types), f"{prefix}.intent_types",
                     f"must be a non-empty subset of {prefix}.behavior_types ({self.behavior_types}), "
                     f"got {self.intent_types}")
        _require(self.pair_weight == 0 or self.num_categories >= 2, f"{prefix}.pair_weight",
                 f"needs {prefix}.num_categories >= 2 (a category cycle), got {self.num_categories}")

    @property
    def objectives_on(self) -> bool:
        """Whether samples carry a target objective (``num_objectives`` >= 2)."""
        return self.num_objectives is not None and self.num_objectives > 1


LOG_EVENT_FORMATS = ("auto", "csv", "parquet")


@dataclass
class LogsConfig:
    """Preprocessing of real event logs (``dare-rec prepare --source taobao|tmall|events``, docs/design.md §3).

    Per user sorted by time (stable: file order breaks ties), users with >= ``min_len`` kept behaviors are
    kept. Positions count from the end (1 = last behavior): test target at ``test_position``, val at
    ``val_position``, train at ``train_start + i * train_stride`` for i < ``train_count`` (positions deeper
    than a user's length are skipped). A target's history is the up to ``max_len`` behaviors before it. Each
    positive gets ``negatives`` negatives drawn with probability proportional to item frequency, never from
    the user's history. See dare_rec.data.logs.
    """

    min_len: int = 210
    max_len: int = 200
    train_start: int = 3
    train_stride: int = 5
    train_count: int = 19
    val_position: int = 2
    test_position: int = 1
    negatives: int = 2
    # Behavior values kept as clicks; null: the source's default (taobao [pv], tmall ["0"], events: all rows).
    behaviors: Optional[List[str]] = None
    # Behavior values kept in the histories (must include the click values); null: the clicks only (the
    # paper's protocol). Targets, negatives and the positions stay clicks; hist_btype records each type.
    history_behaviors: Optional[List[str]] = None
    # Malformed input rows: false -> fail naming file, line and column; true -> skip and count them.
    skip_malformed: bool = False
    seed: int = 0
    row_group_size: int = 8192
    # A row group also closes at this many MiB (uncompressed), so long histories make smaller groups.
    row_group_mb: int = 64
    train_files: int = 8
    # Size of the raw CSV blocks parsed at once (bounds the reader's memory).
    block_mb: int = 16
    # Generic event logs (--source events): file format and column names. A null category column puts every
    # item in category 1; a null behavior column keeps every row.
    event_format: str = "auto"
    event_delimiter: str = ","
    event_user_col: str = "user_id"
    event_item_col: str = "item_id"
    event_category_col: Optional[str] = "category_id"
    event_timestamp_col: str = "timestamp"
    event_behavior_col: Optional[str] = "behavior"
    # Every legal behavior value (others are malformed rows); empty: any value is legal.
    event_known_behaviors: List[str] = field(default_factory=list)

    def train_positions(self) -> List[int]:
        return [self.train_start + i * self.train_stride for i in range(self.train_count)]

    def validate(self, prefix: str = "logs") -> None:
        _positive(self, prefix, "min_len", "max_len", "train_start", "train_stride", "val_position", "test_position",
                  "row_group_size", "row_group_mb", "train_files", "block_mb")
        _non_negative(self, prefix, "train_count", "negatives")
        _at_most_history_limit(self, prefix, "max_len")
        train = self.train_positions()
        _require(self.val_position != self.test_position, f"{prefix}.val_position",
                 f"must differ from {prefix}.test_position ({self.test_position})")
        for name in ("val_position", "test_position"):
            _require(getattr(self, name) not in train, f"{prefix}.{name}",
                     f"{getattr(self, name)} is also a train position ({train[0]}, {train[0] + self.train_stride}, "
                     f"...)")
        deepest = max(self.val_position, self.test_position)
        _require(self.min_len >= deepest, f"{prefix}.min_len",
                 f"must be >= {prefix}.val_position and {prefix}.test_position ({deepest}), got {self.min_len}")
        _require(self.behaviors is None or len(self.behaviors) > 0, f"{prefix}.behaviors",
                 "must be null or a non-empty list")
        if self.history_behaviors is not None:
            _require(len(self.history_behaviors) > 0, f"{prefix}.history_behaviors",
                     "must be null or a non-empty list")
            _require(len(set(self.history_behaviors)) == len(self.history_behaviors),
                     f"{prefix}.history_behaviors", f"lists a value twice: {self.history_behaviors}")
            missing = [b for b in self.behaviors or [] if b not in self.history_behaviors]
            _require(not missing, f"{prefix}.history_behaviors",
                     f"must include the click behaviors {prefix}.behaviors; {missing} missing")
        _one_of(self.event_format, f"{prefix}.event_format", LOG_EVENT_FORMATS, "format")
        _require(len(self.event_delimiter) == 1, f"{prefix}.event_delimiter",
                 f"must be one character, got {self.event_delimiter!r}")
        seen: Dict[str, str] = {}
        for name in ("event_user_col", "event_item_col", "event_category_col", "event_timestamp_col",
                     "event_behavior_col"):
            col = getattr(self, name)
            if col is None:  # only the optional columns can be null (from_dict enforces the types)
                continue
            _require(col != "", f"{prefix}.{name}", "must be a non-empty column name")
            _require(col not in seen, f"{prefix}.{name}", f"column {col!r} is already {prefix}.{seen.get(col)}")
            seen[col] = name


@dataclass
class DataConfig:
    """Where the Parquet dataset lives and how it is batched."""

    path: str = "data/synthetic"
    batch_size: int = 256
    eval_batch_size: int = 1024
    # Histories longer than this keep their most recent max_len behaviors (the GSU search width N).
    max_len: int = 200
    # Batches the background reader prepares ahead of the training step.
    prefetch_batches: int = 4
    # Compare every file read with its sha256 in meta.json before using it (reads every byte once). Without
    # it the reader checks cheaply that the files and their row counts are the ones meta.json lists.
    verify_hashes: bool = False

    def validate(self, prefix: str = "data") -> None:
        _positive(self, prefix, "batch_size", "eval_batch_size", "max_len", "prefetch_batches")
        _at_most_history_limit(self, prefix, "max_len")


@dataclass
class ModelConfig:
    """The model (docs/design.md §4): a named variant, optionally with some of its axes set directly.

    ``variant`` presets the axes ``layout``, ``projection``, ``score``, ``search``, ``target_aware``,
    ``positions`` and ``attention_width`` (dare_rec/modules/variants.py); an axis set here (not null) overrides
    the variant's value, so ``--model.variant twin --model.search hard`` is TWIN (hard). ``d_att`` and
    ``d_pos_att`` size the attention tables of a layout that has them (``decoupled``, ``four``) when its
    ``attention_width`` is ``d_att`` (DARE's; TWIN-4E's is ``d_rep``, as the reference runs it); a ``shared``
    layout has one table set of dims ``d_rep`` / ``d_pos``.
    """

    variant: str = "dare"
    layout: Optional[str] = None
    projection: Optional[str] = None
    score: Optional[str] = None
    search: Optional[str] = None
    target_aware: Optional[bool] = None
    positions: Optional[bool] = None
    attention_width: Optional[str] = None
    d_att: int = 16
    d_rep: int = 64
    d_pos: int = 16
    # Position dim of the attention tables (null: d_pos).
    d_pos_att: Optional[int] = None
    top_k: int = 20
    mlp_hidden: List[int] = field(default_factory=lambda: [200, 80])
    aux_loss: bool = True
    # The aux head's softmax reads at most this many behaviors per sample: all of a history that is no longer,
    # else one behavior from each of aux_behaviors equal strata of it (a deterministic, data-keyed sample that
    # covers the whole history), whose representations are looked up on their own. Bounds the aux head's
    # memory and lookups at long N; null: every behavior (the reference's head, O(N * d_rep) per sample).
    aux_behaviors: Optional[int] = 256
    # BatchNorm1d on the over-arch inputs (main and aux heads); running statistics at evaluation.
    batch_norm: bool = True
    # null: TorchRec's / PyTorch's default initialisation; a number: every weight (tables, position tables,
    # linear maps, PReLU slopes, BatchNorm scales; not biases) ~ N(0, init_std), as the reference code does.
    init_std: Optional[float] = 0.01
    # Implementation of the model's custom ops (GSU top-K, the ESU's and the aux head's jagged gathers and
    # weighted sums; dare_rec/ops): auto, the Triton kernels on CUDA when triton imports, the PyTorch reference
    # otherwise (same math, parity-tested); pytorch or triton force one.
    op_kernel: str = "auto"
    # Side fields of every behavior (docs/side-info.md §2.0, §2.2): SIDE_FIELDS; btype reads the dataset's
    # hist_btype. btype is a small dense table per table group (dims d_pos_att / d_pos, row 0 the target's
    # query): a per-behavior score bias on the attention side, a block of the behavior vector on the
    # representation side. seller and brand read hist_/target_seller and _brand (meta.json num_sellers /
    # num_brands rows; id 1, unknown, is a learned row): a table per table group like item's, whose block joins
    # [item; cate] in the attention and representation vectors of behaviors and targets (the semantic score is
    # scaled by sqrt(n * d_att), n the semantic fields). Empty: today's model, bit for bit.
    side_fields: List[str] = field(default_factory=list)
    # The time gap to the target (target_ts - hist_ts, log2 buckets of dare_rec/data/side.py) as a side field
    # like btype (TIN's TTE-T); needs hist_ts and target_ts in the dataset.
    time_gap: bool = False
    # Bucket ids 1..gap_buckets of the time gap (the last bucket is open-ended); 2..54.
    gap_buckets: int = DEFAULT_TIME_GAP_BUCKETS
    # Stacked TIN (docs/side-info.md §2.6): 2 adds a second ESU layer that searches the whole history again with
    # the query W_t v_t^A + W_c c (c: layer 1's weighted sum of its K behaviors' attention vectors; two D_att x
    # D_att maps) and aggregates its own top K; its output joins the over-arch input (and the aux head's). Needs
    # the dot score. 1: today's model, bit for bit.
    esu_layers: int = 1
    # Hard search's hierarchy (search hard, docs/side-info.md §2.3): an ordered list of distinct HARD_LEVELS.
    # Behaviors rank lexicographically by which levels match the target's ids (the first level decides first),
    # the most recent first within a rank; brand and seller read the dataset's hist_/target_brand and _seller
    # (id 1, unknown, never matches). [cate]: today's hard search, bit for bit. Soft search: [cate] only.
    hard_levels: List[str] = field(default_factory=lambda: ["cate"])
    # Hard search's fill when fewer than K behaviors match any level: recent, the most recent others (today's);
    # soft, the others of highest score (the soft top-K's order). Soft search: recent only.
    hard_fill: str = "recent"
    # How the dense side tables (the time gap, btype) meet the semantic [item; cate; ...] vector
    # (docs/side-info.md §2.1): concat, per-field dot products next to the semantic one and blocks of their own
    # in the representation (today's model, bit for bit); add (TIN's sum), rows as wide as the semantic vector
    # (n * d_att on the attention side, n * d_rep on the representation side, n counting seller / brand when
    # used) added to the behavior's and the target's vectors, so one dot product holds the semantic x temporal
    # terms. Positions keep their own term and block under both (d_pos, d_pos_att apply): summed into the
    # item / category vectors they cost 0.009 test AUC on the click-only planted Taobao log (10 seeds).
    temporal_merge: str = "concat"
    # Decoupled side-information TIN (DI-TIN, docs/side-info.md §2.5): null, one attention head over every field in
    # use (today's model, bit for bit); else a list of heads, each a list of distinct fields in use
    # (ModelConfig.head_fields: the semantic fields item, cate, and seller / brand with side_fields; pos with
    # positions, gap with time_gap, btype with side_fields [btype]). Each head scores the behaviors with its
    # fields only (semantic dot products scaled by its own semantic width, the dense fields' biases), selects its
    # own top_k (equal scores: the more recent behavior first) and weights the fused representation of every
    # field; the over-arch input gains one h and one v_t * h per head. Needs soft search, the dot score and
    # esu_layers 1.
    attention_heads: Optional[List[List[str]]] = None
    # Target-decoupled positions (docs/side-info.md §2.4): O position tables per table group, attention and
    # representation, one per target objective; a sample reads the slice of its target_objective (ids 1..O, a
    # column of the dataset). Needs positions and attention_heads null. The gap tables of time_gap stay shared.
    # 1: today's model, bit for bit.
    position_objectives: int = 1

    def validate(self, prefix: str = "model") -> None:
        _positive(self, prefix, "d_att", "d_rep", "d_pos", "top_k")
        _one_of(self.variant, f"{prefix}.variant", tuple(VARIANTS), "variant")
        for axis, values in AXES.items():
            _require(getattr(self, axis) is None or getattr(self, axis) in values, f"{prefix}.{axis}",
                     f"unknown value {getattr(self, axis)!r}; choose one of {values} or null (the variant's)")
        for name in ("d_pos_att", "init_std", "aux_behaviors"):
            value = getattr(self, name)
            _require(value is None or value > 0, f"{prefix}.{name}", f"must be > 0 or null, got {value}")
        _one_of(self.op_kernel, f"{prefix}.op_kernel", OP_KERNELS, "kernel")
        _require(len(self.mlp_hidden) > 0 and all(h > 0 for h in self.mlp_hidden), f"{prefix}.mlp_hidden",
                 f"must be a non-empty list of positive sizes, got {self.mlp_hidden}")
        _require(isinstance(self.side_fields, list) and all(f in SIDE_FIELDS for f in self.side_fields)
                 and len(set(self.side_fields)) == len(self.side_fields), f"{prefix}.side_fields",
                 f"must be a list of distinct fields of {SIDE_FIELDS}, got {self.side_fields!r}")
        _require(2 <= self.gap_buckets <= MAX_TIME_GAP_BUCKETS, f"{prefix}.gap_buckets",
                 f"must be in [2, {MAX_TIME_GAP_BUCKETS}], got {self.gap_buckets}")
        _require(self.esu_layers in ESU_LAYERS, f"{prefix}.esu_layers",
                 f"must be one of {ESU_LAYERS}, got {self.esu_layers!r}")
        # Layer 2's score is a dot product with a modulated query; DIN's MLP score has no such form to stack.
        _require(self.esu_layers == 1 or self.spec().score == "dot", f"{prefix}.esu_layers",
                 f"{self.esu_layers} needs score dot, not {self.spec().score}")
        _require(isinstance(self.hard_levels, list) and len(self.hard_levels) > 0
                 and all(level in HARD_LEVELS for level in self.hard_levels)
                 and len(set(self.hard_levels)) == len(self.hard_levels), f"{prefix}.hard_levels",
                 f"must be a non-empty list of distinct levels of {HARD_LEVELS}, got {self.hard_levels!r}")
        _one_of(self.hard_fill, f"{prefix}.hard_fill", HARD_FILLS, "fill")
        _require(self.position_objectives >= 1, f"{prefix}.position_objectives",
                 f"must be >= 1, got {self.position_objectives}")
        _require(self.position_objectives == 1 or self.spec().positions, f"{prefix}.position_objectives",
                 f"{self.position_objectives} needs positions, which variant {self.variant} has off "
                 f"(model.positions true turns them on)")
        if self.spec().search == "soft":  # both fields shape hard search only: a value for soft search is a mistake
            _require(self.hard_levels == ["cate"], f"{prefix}.hard_levels",
                     f"applies to hard search only (model.search hard, variant twin_hard); soft search takes the "
                     f"default [cate], got {self.hard_levels!r}")
            _require(self.hard_fill == "recent", f"{prefix}.hard_fill",
                     f"applies to hard search only (model.search hard, variant twin_hard); soft search takes the "
                     f"default recent, got {self.hard_fill!r}")
        _one_of(self.temporal_merge, f"{prefix}.temporal_merge", TEMPORAL_MERGES, "merge")
        # add with no dense side table would be concat under another name: a switch that does nothing is refused
        _require(self.temporal_merge == "concat" or bool(self.dense_side_fields), f"{prefix}.temporal_merge",
                 "add needs a dense side table to add: model.time_gap true or model.side_fields [btype] (positions "
                 "stay a term of their own under add)")
        _require(self.position_objectives == 1 or self.attention_heads is None, f"{prefix}.position_objectives",
                 f"{self.position_objectives} needs attention_heads null, got {self.attention_heads}")
        if self.attention_heads is not None:
            self._validate_heads(f"{prefix}.attention_heads")

    def _validate_heads(self, name: str) -> None:
        fields = list(self.head_fields)
        _require(len(self.attention_heads) > 0, name, "must be null or a non-empty list of heads, got []")
        for number, head in enumerate(self.attention_heads, 1):
            _require(len(head) > 0, name, f"head {number} is empty; a head lists some of the fields in use {fields}")
            _require(len(set(head)) == len(head), name, f"head {number} {head} names a field twice")
            for f in head:
                _require(f in fields, name, f"head {number}: {f!r} is not a field in use; the fields in use are "
                                            f"{fields}")
        spec = self.spec()
        # Hard search ranks by level codes, not by a score per head; DIN's MLP has no per-field terms to split;
        # stacked TIN's layer-2 query lives in the [item; cate; ...] space, which a head without them does not have.
        _require(spec.search == "soft", name, f"needs search soft, not {spec.search}")
        _require(spec.score == "dot", name, f"needs score dot, not {spec.score}")
        _require(self.esu_layers == 1, name, f"needs esu_layers 1, not {self.esu_layers}")
        # Under add the side rows are summed into the semantic vectors, so a field no longer has a score term of
        # its own for a head to pick (docs/side-info.md Status).
        _require(self.temporal_merge == "concat", name, f"needs temporal_merge concat, not {self.temporal_merge}")

    def spec(self) -> ModelSpec:
        """The resolved axes: the variant's preset with every non-null axis field applied."""
        preset = VARIANTS[self.variant]
        return ModelSpec(**{axis: getattr(preset, axis) if getattr(self, axis) is None else getattr(self, axis)
                            for axis in AXES})

    def _own_attention_dims(self) -> bool:
        spec = self.spec()
        return spec.has_attention_tables and spec.attention_width == "d_att"

    @property
    def attention_dim(self) -> int:
        """Dim of the tables that score attention: ``d_att`` when the attention tables have dims of their own
        (``attention_width`` d_att), else ``d_rep`` (shared tables, or TWIN-4E's attention tables)."""
        return self.d_att if self._own_attention_dims() else self.d_rep

    @property
    def dense_side_fields(self) -> Tuple[str, ...]:
        """The side fields in use, in the order their blocks follow the position block of a behavior vector:
        ``gap`` (when ``time_gap``), then ``btype``."""
        return (("gap",) if self.time_gap else ()) + tuple(f for f in SIDE_FIELDS
                                                            if f in self.side_fields and f not in SEMANTIC_SIDE_FIELDS)

    @property
    def semantic_side_fields(self) -> Tuple[str, ...]:
        """The side fields with tables like item's (``seller``, ``brand``) in use, in SEMANTIC_SIDE_FIELDS order."""
        return tuple(f for f in SEMANTIC_SIDE_FIELDS if f in self.side_fields)

    @property
    def semantic_fields(self) -> Tuple[str, ...]:
        """The fields with sharded tables, in the order of their blocks in ``[item; cate; ...]`` vectors (``e^A``
        columns, each ``attention_dim`` wide; ``e^R`` blocks, each ``d_rep``): item, category, then the semantic
        side fields (n of them together: D_att = n * attention_dim)."""
        return ("item", "cate") + self.semantic_side_fields

    @property
    def read_side_fields(self) -> Tuple[str, ...]:
        """The side fields the data reader adds to the batches (its ``side_fields``): ``dense_side_fields``, then
        ``semantic_side_fields`` (their history and target keys, ``dare_rec.data.batch.HARD_KEYS``)."""
        return self.dense_side_fields + self.semantic_side_fields

    def reader_inputs(self) -> Dict[str, Any]:
        """The data reader's arguments this model decides (``ParquetBatchReader`` keywords): the side fields it
        reads, the gap buckets, the hard levels' fields and the number of target objectives."""
        return dict(side_fields=self.read_side_fields, gap_buckets=self.gap_buckets,
                    hard_fields=self.hard_side_fields, objectives=self.position_objectives)

    @property
    def head_fields(self) -> Tuple[str, ...]:
        """The fields an attention head may name (``attention_heads``): the semantic fields, then the dense ones in
        use (``pos`` with positions, then :attr:`dense_side_fields`), each a per-behavior bias of the score."""
        return self.semantic_fields + (("pos",) if self.spec().positions else ()) + self.dense_side_fields

    @property
    def hard_side_fields(self) -> Tuple[str, ...]:
        """The hard levels read from side columns (``brand``, ``seller``), in ``hard_levels`` order: the reader
        adds their history and target keys (``dare_rec.data.batch.HARD_KEYS``)."""
        return tuple(level for level in self.hard_levels if level != "cate")

    @property
    def num_semantic_fields(self) -> int:
        """n, the semantic fields of a behavior vector (:attr:`semantic_fields`): its attention part is
        n * attention_dim wide, its representation part n * d_rep."""
        return len(self.semantic_fields)

    @property
    def attention_position_dim(self) -> int:
        """Width of the attention side's position tables: d_pos_att (d_pos when null, or when attention has no
        dims of its own)."""
        if not self._own_attention_dims():
            return self.d_pos
        return self.d_pos if self.d_pos_att is None else self.d_pos_att

    @property
    def attention_side_dim(self) -> int:
        """Width of the attention side's dense side tables (time gap, btype): n * attention_dim under
        ``temporal_merge add`` (they are added to the ``[item; cate; ...]`` vector), else the position width."""
        if self.temporal_merge == "add":
            return self.num_semantic_fields * self.attention_dim
        return self.attention_position_dim

    @property
    def representation_side_dim(self) -> int:
        """Width of the representation side's dense side tables: n * d_rep under ``temporal_merge add``, else
        d_pos."""
        return self.num_semantic_fields * self.d_rep if self.temporal_merge == "add" else self.d_pos


@dataclass
class TableConfig:
    """Sharding and storage of one embedding table. ``sharding_type: null`` lets the planner choose."""

    sharding_type: Optional[str] = None
    compute_kernel: str = "fused"
    data_type: str = "fp32"
    # Column-wise shards are at least this wide (TorchRec's min_partition; null: the planner's default).
    min_partition: Optional[int] = None
    # fused_uvm_caching: share of the table's rows cached in GPU memory (null: TorchRec's default, 0.2).
    cache_load_factor: Optional[float] = None

    def validate(self, prefix: str) -> None:
        _one_of(self.sharding_type, f"{prefix}.sharding_type", SHARDING_TYPES, "sharding type", null_ok=True)
        _one_of(self.compute_kernel, f"{prefix}.compute_kernel", COMPUTE_KERNELS, "compute kernel")
        _one_of(self.data_type, f"{prefix}.data_type", TABLE_DATA_TYPES, "data type")
        _require(self.min_partition is None or self.min_partition > 0, f"{prefix}.min_partition",
                 f"must be > 0 or null, got {self.min_partition}")
        _require(self.cache_load_factor is None or 0 < self.cache_load_factor <= 1, f"{prefix}.cache_load_factor",
                 f"must be in (0, 1] or null, got {self.cache_load_factor}")


@dataclass
class ShardingConfig:
    """Per-table constraints for the TorchRec planner; ``tables`` overrides ``default`` by table name."""

    default: TableConfig = field(default_factory=TableConfig)
    tables: Dict[str, TableConfig] = field(default_factory=dict)
    # Per-rank memory the planner may use for embedding tables (None: the device's capacity).
    memory_per_rank_mb: Optional[float] = None
    # How the tables are read: LOOKUPS (auto: singleton_bags on CPU, sequence on CUDA); same math either way.
    # A job stores the resolved value in its checkpoint's config, and the checkpoint is read the same way.
    lookup: str = "auto"
    # FBGEMM's check of every looked-up id against its table, in every lookup: true fails the step on an id outside
    # its table. Off by default: ids are checked where they enter (the reader checks every row group against
    # meta.json's vocabularies and DareModel.score_candidates its arguments), and at N = 10,000 the per-batch
    # check is 8% of DARE's inference time in a profile (docs/performance.md, "Long histories"). Turn it on when
    # feeding the model from code of your own.
    bounds_check: bool = False

    def for_table(self, name: str) -> TableConfig:
        return self.tables.get(name, self.default)

    def table_configs(self, prefix: str = "sharding") -> List[Tuple[str, TableConfig]]:
        """(dotted name, config) of the default and of every per-table override."""
        return [(f"{prefix}.default", self.default)] + [(f"{prefix}.tables.{n}", t) for n, t in self.tables.items()]

    def validate(self, prefix: str = "sharding") -> None:
        mem = self.memory_per_rank_mb
        _require(mem is None or mem > 0, f"{prefix}.memory_per_rank_mb", f"must be > 0 or null, got {mem}")
        _one_of(self.lookup, f"{prefix}.lookup", LOOKUPS, "lookup")
        for key, table in self.table_configs(prefix):
            table.validate(key)


@dataclass
class TrainConfig:
    """Optimisation, precision, validation, checkpoint and logging."""

    epochs: int = 1
    # Stop after this many steps (0: run all epochs).
    max_steps: int = 0
    # Optimizer of the embedding tables (SPARSE_OPTIMIZERS above; rowwise_adam needs CUDA) and its learning
    # rate. The defaults of the recipe (exact Adagrad 0.2, Adam 0.01, BatchNorm, N(0, 0.01) init, dense L2 1e-6)
    # are the recipe measured best on the comparison datasets (README "Training recipe").
    sparse_optimizer: str = "adagrad"
    # null: chosen from the dataset when the job starts (dare_rec/optim.py default_sparse_lr: exact Adagrad 0.2
    # on a sparse catalog, 0.02 on a dense one, by training samples per item) and recorded in the run's config.
    sparse_lr: Optional[float] = None
    # UPDATE_KERNELS: implementation of the row-sparse Adam update on CPU (sparse_optimizer adam): auto,
    # pytorch (eager reference) or compiled (TorchInductor, one fused loop; needs a C++ compiler).
    sparse_adam_kernel: str = "auto"
    # Adam over everything dense (MLPs, position tables, projections, DIN attention, BatchNorm).
    dense_lr: float = 0.01
    # L2 penalty l2 * sum(w^2) on dense weights (not biases, not position tables), as the reference code
    # adds to its loss; applied as Adam's coupled weight decay 2 * l2, which has the same gradient.
    dense_l2: float = 1e-6
    # bf16 autocast around the dense part (GSU scoring, ESU, MLP); tables keep their own data_type.
    bf16: bool = False
    # TRAIN_PIPELINES: sparse_dist, or prefetch (CUDA, fused_uvm_caching tables with cache prefetch).
    pipeline: str = "sparse_dist"
    # Validate every this many steps (0: only at the end of each epoch).
    val_every: int = 0
    log_every: int = 50
    # Run folder; null: runs/<config file name>-<variant> (runs/defaults-<variant> without --config), so runs of
    # different presets and variants never meet in one folder.
    output_dir: Optional[str] = None
    seed: int = 0
    dist_timeout_s: int = 1800
    # Checkpoints are written every checkpoint_every steps and every checkpoint_every_minutes (0 turns either
    # off; the clock is read every log_every steps), after every validation that improves val_metric, and at
    # the end. keep_checkpoints newest ones stay, plus the best.
    checkpoint_every: int = 0
    checkpoint_every_minutes: float = 30.0
    keep_checkpoints: int = 2
    # auto: continue from output_dir's latest checkpoint (a rerun, a torchx restart); never: refuse an
    # output_dir that holds a run, unless overwrite deletes it first.
    resume: str = "auto"
    overwrite: bool = False
    # Deterministic kernels (torch.use_deterministic_algorithms): same config, seed and process/thread count
    # give identical metrics.
    deterministic: bool = True
    # Validation metric that picks the best checkpoint (direction known per metric: logloss lower is better).
    val_metric: str = "auc"
    # Stop after this many validations without improvement of val_metric (0: never stop early).
    early_stop_patience: int = 0
    # Write each rank's sample ids per step to <output_dir>/trace/ (for exact-resume checks).
    trace_samples: bool = False
    # Also write the train and val metrics to TensorBoard event files in <output_dir>/tensorboard (rank 0).
    tensorboard: bool = True

    def validate(self, prefix: str = "train") -> None:
        _positive(self, prefix, "epochs", "log_every", "dist_timeout_s", "dense_lr", "keep_checkpoints")
        _require(self.sparse_lr is None or self.sparse_lr > 0, f"{prefix}.sparse_lr",
                 f"must be > 0 or null, got {self.sparse_lr}")
        _non_negative(self, prefix, "max_steps", "val_every", "dense_l2", "checkpoint_every",
                      "checkpoint_every_minutes", "early_stop_patience")
        _one_of(self.sparse_optimizer, f"{prefix}.sparse_optimizer", SPARSE_OPTIMIZERS, "optimizer")
        _one_of(self.sparse_adam_kernel, f"{prefix}.sparse_adam_kernel", UPDATE_KERNELS, "kernel")
        _one_of(self.resume, f"{prefix}.resume", RESUME_MODES, "mode")
        _require(not self.overwrite or self.resume == "never", f"{prefix}.overwrite",
                 "needs train.resume never (with auto a rerun continues the run in train.output_dir)")
        _one_of(self.val_metric, f"{prefix}.val_metric", tuple(METRIC_HIGHER_IS_BETTER), "metric")
        _one_of(self.pipeline, f"{prefix}.pipeline", TRAIN_PIPELINES, "pipeline")


@dataclass
class Config:
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    logs: LogsConfig = field(default_factory=LogsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sharding: ShardingConfig = field(default_factory=ShardingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "Config":
        """Checks every field that can be checked without data (each section its own, then the rules that span
        sections); raises ConfigError naming the field."""
        for name in ("synthetic", "logs", "data", "model", "sharding", "train"):
            getattr(self, name).validate(name)
        # K > N would silently select every behavior: a configuration mistake, refused
        _require(self.model.top_k <= self.data.max_len, "model.top_k",
                 f"must be <= data.max_len ({self.data.max_len}), got {self.model.top_k}: the search selects "
                 f"among at most max_len behaviors")
        if self.train.sparse_optimizer == DENSE_ADAM:
            for key, table in self.sharding.table_configs():
                _require(table.sharding_type is None and table.compute_kernel == "fused", key,
                         "train.sparse_optimizer dense_adam replicates every table (data-parallel, TorchRec's dense "
                         "kernel): leave sharding_type null and compute_kernel 'fused'")
        return self


# ---------------------------------------------------------------------------------------------------
# Building configs from YAML and overrides
# ---------------------------------------------------------------------------------------------------


def default_output_dir(config_path: Optional[str | Path], variant: str) -> str:
    """``runs/<config file name>-<variant>``: the run folder of ``train.output_dir: null``."""
    return f"runs/{Path(config_path).stem if config_path else 'defaults'}-{variant}"


def load_config(path: Optional[str | Path] = None, overrides: Sequence[str] = ()) -> Config:
    """Builds a Config from an optional YAML preset and ``--dotted.name value`` overrides, then validates it.

    Args:
        path: YAML file with any subset of the sections of :class:`Config`.
        overrides: alternating ``--section.field`` / value tokens (``--a.b=v`` also accepted).
    """
    raw: Dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"--config: file {str(p)!r} does not exist")
        try:
            with open(p, encoding="utf-8") as f:
                loaded = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"--config: {p}: {_yaml_problem(e)}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"--config: {p}: byte {e.start}: not UTF-8 text ({e.reason})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"--config: {str(p)!r} must hold a mapping of sections, got {type(loaded).__name__}")
        raw = loaded or {}
    for dotted, value in parse_overrides(overrides):
        _set_dotted(raw, dotted, value)
    cfg = from_dict(Config, raw, prefix="").validate()
    if cfg.train.output_dir is None:
        cfg.train.output_dir = default_output_dir(path, cfg.model.variant)
    return cfg


def parse_overrides(tokens: Sequence[str]) -> List[Tuple[str, Any]]:
    """Turns ``["--model.d_att", "32", "--train.bf16=true"]`` into ``[("model.d_att", 32), ("train.bf16", True)]``."""
    pairs: List[Tuple[str, Any]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or "." not in tok:
            raise ConfigError(f"unrecognised argument {tok!r}: config overrides look like --section.field VALUE")
        if "=" in tok:
            key, text = tok[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(tokens):
                raise ConfigError(f"{tok[2:]}: missing value")
            key, text = tok[2:], tokens[i + 1]
            i += 2
        try:
            pairs.append((key, yaml.safe_load(text)))
        except yaml.YAMLError as e:
            raise ConfigError(f"{key}: {text!r} is not a valid YAML value: {_yaml_problem(e)}") from None
    return pairs


def _yaml_problem(error: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: where (1-based line and column) and what."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    return f"{where}invalid YAML: {what}" + (f" ({context})" if context else "")


def _set_dotted(raw: Dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


def from_dict(cls: type, raw: Any, prefix: str) -> Any:
    """Builds dataclass ``cls`` from a nested mapping, type-checking every value against the annotations."""
    where = prefix or "config"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{_join(prefix, unknown[0])}: unknown field; known fields of {where}: {sorted(names)}")
    kwargs = {k: _coerce(hints[k], v, _join(prefix, k)) for k, v in raw.items()}
    return cls(**kwargs)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _coerce(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, name)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, name)
    if origin in (list, List):
        if not isinstance(value, list):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{name}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads exponents without a dot ("1e-6") as strings
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{name}: unsupported config type {tp!r}")  # a programming error, not a user error


def to_dict(cfg: Any) -> Dict[str, Any]:
    """The config as plain nested dicts (for YAML dumps next to checkpoints and in metrics)."""
    return dataclasses.asdict(cfg)


def dump_config(cfg: Config, path: str | Path) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False)


def describe_fields(cls: type = Config, prefix: str = "") -> List[Tuple[str, str, Any]]:
    """(dotted name, type, default) for every overridable leaf field, for --help output and the README."""
    rows: List[Tuple[str, str, Any]] = []
    hints = typing.get_type_hints(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        name = _join(prefix, f.name)
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe_fields(tp, name))
        elif typing.get_origin(tp) in (dict, Dict):
            rows.append((f"{name}.<table>.<field>", "per-table TableConfig", "{}"))
        else:
            rows.append((name, _type_name(tp), getattr(default, f.name)))
    return rows


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return f"{_type_name(inner[0])} or null"
    if origin in (list, List):
        return f"list[{_type_name(typing.get_args(tp)[0])}]"
    return getattr(tp, "__name__", str(tp))


def config_help() -> str:
    """An argparse epilog listing every config override with its type and default."""
    lines = ["config overrides (--section.field VALUE; VALUE is YAML):"]
    for name, tp, default in describe_fields():
        lines.append(f"  --{name:<44} {tp:<18} default: {default}")
    return "\n".join(lines)
