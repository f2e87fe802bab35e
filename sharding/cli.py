"""``dare-rec plan``: print the sharding plan and per-rank memory for a world size, without training.

Vocabulary sizes come from the dataset's meta.json (``data.path``) or from ``--num-items`` /
``--num-categories`` when the data is not prepared yet. No process group is created: the planner only needs
the topology, so this runs anywhere (plan a 64-GPU job on a laptop with ``--device cuda --world-size 64``).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import torch

from dare_rec.config import ConfigError, config_help, load_config, resolve_lookup
from dare_rec.data.parquet import check_side_fields, num_behavior_types, semantic_vocabulary
from dare_rec.data.schema import DatasetMeta
from dare_rec.modules.model import build_model
from dare_rec.optim import apply_sparse_optimizer, is_table
from dare_rec.pipelines.errors import cli_errors
from dare_rec.sharding.planner import build_plan, explain_plan


def parse_args(argv: Optional[List[str]]) -> tuple[argparse.Namespace, List[str]]:
    parser = argparse.ArgumentParser(prog="dare-rec plan", description=__doc__, epilog=config_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML preset")
    parser.add_argument("--world-size", type=int, required=True, help="total number of ranks")
    parser.add_argument("--local-world-size", type=int, help="ranks per node (default: world size)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="compute device of the ranks")
    parser.add_argument("--num-items", type=int, help="item vocabulary size incl. padding (default: meta.json)")
    parser.add_argument("--num-categories", type=int, help="category vocabulary size (default: meta.json)")
    return parser.parse_known_args(argv)


@cli_errors
def main(argv: Optional[List[str]] = None) -> int:
    args, overrides = parse_args(argv)
    cfg = load_config(args.config, overrides)
    if args.world_size <= 0:
        raise ConfigError(f"--world-size: must be > 0, got {args.world_size}")
    local = args.local_world_size or args.world_size
    if local <= 0 or args.world_size % local:
        raise ConfigError(f"--local-world-size: must divide --world-size ({args.world_size}), got {local}")
    if args.num_items is None or args.num_categories is None:
        meta = DatasetMeta.read(cfg.data.path)
        num_items, num_categories = meta.num_items, meta.num_categories
    else:
        num_items, num_categories = args.num_items, args.num_categories
    # the btype side field's table has a row per behavior type of the dataset, a seller / brand table a row per id
    behavior_types, side_vocabulary = None, None
    if cfg.model.side_fields:
        meta = DatasetMeta.read(cfg.data.path)
        check_side_fields(meta, cfg.data.path, cfg.model.read_side_fields)
        behavior_types = num_behavior_types(meta, cfg.data.path)
        side_vocabulary = semantic_vocabulary(meta, cfg.data.path)
    cfg.sharding.lookup = resolve_lookup(cfg.sharding.lookup, args.device)
    model = build_model(cfg, num_items, num_categories, torch.device("meta"), torch.device("meta"), behavior_types,
                        side_vocabulary)
    apply_sparse_optimizer(model, cfg.train, torch.device(args.device))
    plan = build_plan(model, cfg, args.world_size, local, args.device)
    dense_params = sum(p.numel() for n, p in model.named_parameters() if not is_table(n))
    spec = cfg.model.spec()
    print(f"variant {cfg.model.variant} (layout {spec.layout}): attention dim {cfg.model.attention_dim}, "
          f"representation dim {cfg.model.d_rep}, items {num_items:,}, "
          f"categories {num_categories:,}; world size {args.world_size} ({local} per node) on {args.device}\n")
    shapes = {name.split(".")[-2]: tuple(p.shape) for name, p in model.named_parameters() if is_table(name)}
    print(explain_plan(plan, cfg, args.world_size, dense_params, shapes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
