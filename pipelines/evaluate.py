"""Offline evaluation: ``dare-rec evaluate --checkpoint RUN_OR_CHECKPOINT [--pick best|latest] [--data PATH]
[--split test]``.

Given a run's output_dir, evaluates its best checkpoint (best validation ``train.val_metric``; the latest
one while the run has no validation yet) or, with ``--pick latest``, its latest one, and says which. Loads a
training checkpoint into a model sharded for *this* run's world size (DCP reshards), scores every
sample of the split exactly once, and reports exact AUC, GAUC by user and by target category (weight = group
size, single-class groups skipped), logloss (main head only), and the oracle AUC when the data carries true
click probabilities. Writes JSON and prints a markdown table. 1 process or many give the same numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from torch.distributed.elastic.multiprocessing.errors import record

from dare_rec.checkpoint import BEST, POINTERS, check_vocabulary, load_model_state, pick_checkpoint, \
    read_checkpoint_info, verify_on_main
from dare_rec.config import ConfigError
from dare_rec.data.parquet import ParquetBatchReader, check_side_fields
from dare_rec.data.schema import SPLITS, DatasetMeta
from dare_rec.distributed import errors_shared_across_ranks, init_distributed, shutdown
from dare_rec.pipelines.common import build_sharded_model, evaluate_split, set_determinism
from dare_rec.pipelines.errors import CLEAR_ERRORS, cli_errors

_TABLE_ROWS = (("auc", "AUC"), ("gauc_user", "GAUC (by user)"), ("gauc_category", "GAUC (by category)"),
               ("logloss", "logloss"), ("oracle_auc", "oracle AUC (true click probability)"))


def markdown_table(metrics: Dict[str, Any], title: str) -> str:
    lines = [f"**{title}** ({metrics['samples']:,} samples)", "", "| metric | value |", "|---|---|"]
    for key, label in _TABLE_ROWS:
        if key in metrics:
            lines.append(f"| {label} | {metrics[key]:.4f} |")
    return "\n".join(lines)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dare-rec evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="a checkpoint folder, or a run's output_dir (then --pick chooses its checkpoint)")
    parser.add_argument("--pick", default=BEST, choices=POINTERS,
                        help="for a run's output_dir: its best checkpoint by validation (default) or its latest")
    parser.add_argument("--data", help="dataset folder (default: the one the checkpoint was trained on)")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--batch-size", type=int, help="samples per batch per rank (default: data.eval_batch_size)")
    parser.add_argument("--output", help="JSON file for the metrics (default: <checkpoint>/eval-<split>.json); "
                                         "a markdown table is written next to it (.md)")
    return parser.parse_args(argv)


def evaluate(checkpoint: str, data: Optional[str] = None, split: str = "test", batch_size: Optional[int] = None,
             output: Optional[str] = None, progress: bool = True, pick: str = BEST) -> Optional[Dict[str, Any]]:
    """Evaluates a checkpoint; returns the metrics on rank 0 (None on other ranks)."""
    path, picked = pick_checkpoint(checkpoint, pick)
    cfg, state = read_checkpoint_info(path)
    if data is not None:
        cfg.data.path = data
    if batch_size is not None:
        if batch_size <= 0:
            raise ConfigError(f"--batch-size: must be > 0, got {batch_size}")
        cfg.data.eval_batch_size = batch_size
    meta = DatasetMeta.read(cfg.data.path)
    check_vocabulary(meta, state, cfg.data.path, path)
    check_side_fields(meta, cfg.data.path, cfg.model.read_side_fields, cfg.model.hard_side_fields,
                      cfg.model.position_objectives)
    env = init_distributed(cfg.train.dist_timeout_s)
    try:
        with errors_shared_across_ranks(env, CLEAR_ERRORS):
            if env.is_main:
                print(f"evaluating {path} ({_which(picked, state)})", flush=True)
            set_determinism(cfg.train.deterministic)
            verify_on_main(path, env)
            model = build_sharded_model(cfg, meta, env)
            load_model_state(model, path)
            reader = ParquetBatchReader(cfg.data.path, split, cfg.data.eval_batch_size, cfg.data.max_len,
                                        rank=env.rank, world_size=env.world_size,
                                        prefetch_batches=cfg.data.prefetch_batches,
                                        verify_hashes=cfg.data.verify_hashes, **cfg.model.reader_inputs())
            metrics = evaluate_split(model, reader, env, desc=f"evaluate {split}", progress=progress)
    finally:
        shutdown()
    if not env.is_main:
        return None
    metrics.update(checkpoint=str(path), picked=picked, step=state["step"], data=cfg.data.path, split=split,
                   variant=cfg.model.variant, world_size=env.world_size)
    out = Path(output) if output else path / f"eval-{split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        json.dump({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()},
                  f, indent=2, sort_keys=True)
        f.write("\n")
    metrics["output"] = str(out)
    out.with_suffix(".md").write_text(markdown_table(metrics, _title(metrics)) + "\n")
    return metrics


def _which(picked: str, state: Dict[str, Any]) -> str:
    best = state.get("best")
    if picked == "best" and best:
        return f"the run's best: val {best['metric']} {best['value']:.4f} at step {best['step']}"
    if picked == "latest":
        return f"the run's latest, step {state['step']}" + (" (the run has no validation yet)" if not best else "")
    return f"step {state['step']}"


def _title(metrics: Dict[str, Any]) -> str:
    return (f"{metrics['variant']} on {metrics['split']} of {metrics['data']} (step {metrics['step']}, "
            f"{metrics['picked']} checkpoint)")


@record
@cli_errors
def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    metrics = evaluate(args.checkpoint, args.data, args.split, args.batch_size, args.output, pick=args.pick)
    if metrics is not None:
        print(markdown_table(metrics, _title(metrics)))
        print(f"\nwrote {metrics['output']} and {Path(metrics['output']).with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
