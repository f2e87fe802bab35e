"""Sharding plans for the model's embedding tables: constraints from the config, planning, explanation.

Planning runs on every rank with the same inputs (so every rank gets the same plan) instead of TorchRec's
``collective_plan``: with a collective plan, a rank-0 planner error leaves the other ranks waiting in a
broadcast forever; planning everywhere makes an impossible plan fail on every rank with the same message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn
from torchrec.distributed.embedding import EmbeddingCollectionSharder
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.distributed.planner.types import PlannerError
from fbgemm_gpu.split_table_batched_embeddings_ops_common import BoundsCheckMode, CacheAlgorithm
from torchrec.distributed.types import CacheParams, ModuleSharder, ShardingPlan

from dare_rec.config import DENSE_ADAM, SINGLETON_BAGS, Config, ConfigError, resolve_lookup
from dare_rec.cpu_adam import cpu_row_sparse_adam
from dare_rec.modules.tables import table_names

_MB = 1024 * 1024
_CUDA_ONLY_KERNELS = ("fused_uvm", "fused_uvm_caching")
_BYTES = {"fp32": 4, "fp16": 2}


def optimizer_state_bytes(optimizer: str, rows: int, cols: int) -> int:
    """fp32 optimizer state of a table shard: row-wise Adagrad keeps one value per row, Adagrad one per
    weight, row-sparse Adam two per weight plus its per-row step count, partial row-wise Adam one per weight
    plus one per row, dense Adam two per weight, SGD none."""
    per_row = {"rowwise_adagrad": 1, "adagrad": cols, "sgd": 0, "adam": 2 * cols + 1, "rowwise_adam": cols + 1,
               DENSE_ADAM: 2 * cols}
    return rows * per_row[optimizer] * 4


def sharders(bounds_check: bool) -> List[ModuleSharder[nn.Module]]:
    """Sharders for the model's EmbeddingCollections / EmbeddingBagCollections (``sharding.lookup``). The
    fused optimizer comes from the parameters' in-backward optimizer (``dare_rec.optim.apply_sparse_optimizer``);
    the fused params set only FBGEMM's bounds check of the looked-up ids (``sharding.bounds_check``): FATAL when
    on, NONE when off (FBGEMM's own default, WARNING, would log and read row 0 instead of failing)."""
    fused = {"bounds_check_mode": BoundsCheckMode.FATAL if bounds_check else BoundsCheckMode.NONE}
    return [EmbeddingCollectionSharder(fused_params=dict(fused)),
            EmbeddingBagCollectionSharder(fused_params=dict(fused))]


def check_sharding_config(cfg: Config, compute_device: str) -> None:
    """Rejects table names the variant does not have and kernels the device cannot run (ConfigError)."""
    names = table_names(cfg.model)
    if (cfg.train.sparse_optimizer == DENSE_ADAM and compute_device != "cuda"
            and resolve_lookup(cfg.sharding.lookup, compute_device) != SINGLETON_BAGS):
        raise ConfigError(f"train.sparse_optimizer: dense_adam replicates the tables, which TorchRec reads as "
                          f"sequences only on CUDA; use sharding.lookup 'singleton_bags' (or 'auto') on "
                          f"{compute_device}")
    for name in cfg.sharding.tables:
        if name not in names:
            raise ConfigError(f"sharding.tables.{name}: the model ({cfg.model.variant!r}, layout "
                              f"{cfg.model.spec().layout!r}) has no table {name!r}; its tables are {names}")
    for name in names:
        kernel = cfg.sharding.for_table(name).compute_kernel
        key = f"sharding.tables.{name}" if name in cfg.sharding.tables else "sharding.default"
        if kernel in _CUDA_ONLY_KERNELS and compute_device != "cuda":
            raise ConfigError(f"{key}.compute_kernel: {kernel!r} needs a CUDA device; this run is on "
                              f"{compute_device} (use 'fused')")
        if cfg.train.pipeline == "prefetch" and kernel != "fused_uvm_caching":
            raise ConfigError(f"{key}.compute_kernel: train.pipeline 'prefetch' prefetches cache rows and needs "
                              f"'fused_uvm_caching' tables; {name} uses {kernel!r}")
        if (cfg.sharding.for_table(name).sharding_type == "row_wise" and compute_device != "cuda"
                and resolve_lookup(cfg.sharding.lookup, compute_device) == SINGLETON_BAGS):
            raise ConfigError(f"{key}.sharding_type: TorchRec plans 'row_wise' for pooled (singleton_bags) "
                              f"lookups on CUDA only; use sharding.lookup 'sequence' for row-wise tables on "
                              f"{compute_device}")
    if cfg.train.pipeline == "prefetch" and compute_device != "cuda":
        raise ConfigError(f"train.pipeline: 'prefetch' needs a CUDA device (its prefetch runs on a CUDA "
                          f"stream); this run is on {compute_device} (use 'sparse_dist')")


def constraints(cfg: Config) -> Dict[str, ParameterConstraints]:
    """One ParameterConstraints per table from ``cfg.sharding`` (default + per-table overrides); with
    ``train.sparse_optimizer dense_adam`` every table data-parallel on TorchRec's dense kernel."""
    if cfg.train.sparse_optimizer == DENSE_ADAM:
        return {name: ParameterConstraints(sharding_types=["data_parallel"], compute_kernels=["dense"])
                for name in table_names(cfg.model)}
    out = {}
    for name in table_names(cfg.model):
        table = cfg.sharding.for_table(name)
        cache = None
        if table.compute_kernel == "fused_uvm_caching":
            # LRU is the one cache algorithm FBGEMM supports with pipelined prefetch.
            cache = CacheParams(algorithm=CacheAlgorithm.LRU, load_factor=table.cache_load_factor,
                                prefetch_pipeline=cfg.train.pipeline == "prefetch")
        out[name] = ParameterConstraints(
            sharding_types=[table.sharding_type] if table.sharding_type else None,
            compute_kernels=[table.compute_kernel],
            min_partition=table.min_partition,
            cache_params=cache,
        )
    return out


def topology(cfg: Config, world_size: int, local_world_size: int, compute_device: str) -> Topology:
    cap = None if cfg.sharding.memory_per_rank_mb is None else int(cfg.sharding.memory_per_rank_mb * _MB)
    return Topology(
        world_size=world_size,
        local_world_size=local_world_size,
        compute_device=compute_device,
        hbm_cap=cap if compute_device == "cuda" else None,
        ddr_cap=cap if compute_device != "cuda" else None,
    )


def build_plan(module: nn.Module, cfg: Config, world_size: int, local_world_size: int,
               compute_device: str) -> ShardingPlan:
    """Plans ``module`` (its embedding parameters must already carry the in-backward optimizer).

    Raises:
        ConfigError: the constraints cannot be met for this world size / memory (names ``sharding``).
    """
    check_sharding_config(cfg, compute_device)
    planner = EmbeddingShardingPlanner(
        topology=topology(cfg, world_size, local_world_size, compute_device),
        constraints=constraints(cfg),
    )
    try:
        return planner.plan(module, sharders(cfg.sharding.bounds_check))
    except PlannerError as e:
        first_line = str(e).strip().splitlines()[0]
        raise ConfigError(
            f"sharding: no sharding plan satisfies the constraints for world size {world_size} on "
            f"{compute_device} (sharding.default / sharding.tables / sharding.memory_per_rank_mb): {first_line}"
        ) from e


def shard_model(module: nn.Module, cfg: Config, device: torch.device, world_size: int,
                local_world_size: int) -> DistributedModelParallel:
    """Plans and wraps ``module`` in DistributedModelParallel (the process group must exist)."""
    plan = build_plan(module, cfg, world_size, local_world_size, device.type)
    module_sharders = sharders(cfg.sharding.bounds_check)
    if cfg.train.sparse_optimizer == "adam" and device.type == "cpu":
        with cpu_row_sparse_adam():  # FBGEMM has no CPU Adam: TorchRec builds ours (dare_rec/cpu_adam.py)
            return DistributedModelParallel(module=module, device=device, plan=plan, sharders=module_sharders)
    return DistributedModelParallel(module=module, device=device, plan=plan, sharders=module_sharders)


@dataclass
class ShardRow:
    module: str
    table: str
    sharding_type: str
    compute_kernel: str
    rank: int
    row_offset: int
    col_offset: int
    rows: int
    cols: int
    weight_bytes: int
    optimizer_bytes: int


def plan_rows(plan: ShardingPlan, cfg: Config, table_shapes: Optional[Dict[str, Tuple[int, int]]] = None
              ) -> List[ShardRow]:
    """Every shard of every table in ``plan`` with its size and estimated weight + optimizer-state bytes.

    A data-parallel table (``dense_adam``) has no shards in the plan: it is one full copy per rank, sized from
    ``table_shapes`` (table name -> rows, cols), which such a plan requires."""
    rows: List[ShardRow] = []
    for module_path, module_plan in plan.plan.items():
        for table, ps in module_plan.items():
            dtype_bytes = _BYTES[cfg.sharding.for_table(table).data_type]
            if ps.sharding_spec is None:  # data-parallel: the whole table on every rank
                if table_shapes is None:
                    raise ValueError(f"plan_rows: {table} is data-parallel; pass table_shapes to size it")
                n_rows, n_cols = table_shapes[table]
                opt_bytes = optimizer_state_bytes(cfg.train.sparse_optimizer, n_rows, n_cols)
                rows.extend(ShardRow(module_path, table, ps.sharding_type, ps.compute_kernel, rank, 0, 0, n_rows,
                                     n_cols, n_rows * n_cols * dtype_bytes, opt_bytes) for rank in ps.ranks)
                continue
            for shard in ps.sharding_spec.shards:
                n_rows, n_cols = shard.shard_sizes
                row_offset, col_offset = shard.shard_offsets
                rank = shard.placement.rank()
                opt_bytes = optimizer_state_bytes(cfg.train.sparse_optimizer, n_rows, n_cols)
                rows.append(ShardRow(module_path, table, ps.sharding_type, ps.compute_kernel, rank, row_offset,
                                     col_offset, n_rows, n_cols, n_rows * n_cols * dtype_bytes, opt_bytes))
    return rows


def explain_plan(plan: ShardingPlan, cfg: Config, world_size: int, dense_params: Optional[int] = None,
                 table_shapes: Optional[Dict[str, Tuple[int, int]]] = None) -> str:
    """A readable table of the plan and per-rank memory (estimates of weights + optimizer state)."""
    rows = plan_rows(plan, cfg, table_shapes)
    lines = [
        f"{'table':<12} {'sharding':<14} {'kernel':<18} {'dtype':<5} {'rank':>4} {'rows x cols':>16} {'MB':>9}",
    ]
    for r in sorted(rows, key=lambda r: (r.table, r.rank)):
        dtype = cfg.sharding.for_table(r.table).data_type
        lines.append(f"{r.table:<12} {r.sharding_type:<14} {r.compute_kernel:<18} {dtype:<5} {r.rank:>4} "
                     f"{f'{r.rows} x {r.cols}':>16} {(r.weight_bytes + r.optimizer_bytes) / _MB:>9.2f}")
    lines.append("")
    if cfg.train.sparse_optimizer == DENSE_ADAM:
        lines.append("train.sparse_optimizer dense_adam (the reference code's recipe): every table is replicated "
                     "on every rank and trained by the dense Adam (two moments per weight)")
    lines.append("per-rank memory (MB): sparse weights + sparse optimizer state"
                 + (" + replicated dense params with Adam state" if dense_params is not None else ""))
    dense_mb = 0.0 if dense_params is None else dense_params * 4 * 3 / _MB
    for rank in range(world_size):
        w = sum(r.weight_bytes for r in rows if r.rank == rank) / _MB
        o = sum(r.optimizer_bytes for r in rows if r.rank == rank) / _MB
        lines.append(f"  rank {rank}: {w:9.2f} + {o:8.2f}" + (f" + {dense_mb:7.2f}" if dense_params is not None else "")
                     + f" = {w + o + dense_mb:9.2f}")
    return "\n".join(lines)
