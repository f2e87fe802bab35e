"""Analyses of DARE-family models, as the paper measures them: ``dare-rec analyze KIND ...``.

``attention --checkpoint RUN [RUN ...]``
    How well each model's search ranks a sample's behaviors, as NDCG@k / recall@k for k = 1..K: against the
    true relevance (synthetic data, ``hist_relevance``) and against the paper's gains (the mutual information
    between the label and "category c at position p", counted on the training split; skip rules as options).
    Both the GSU's own ranking and a category+position-only ranking (the official script's) are scored.
``gradients --config C [--section.field value ...]``
    Trains the configured model from scratch with the ``dare-rec train`` recipe, splitting every recorded
    step's table gradients into the attention path and the representation path: their cosine (conflict) and
    norm ratio (domination) on tables that serve both roles, and each table's gradient norm otherwise.
``representation --checkpoint RUN [RUN ...]``
    Clusters each model's ESU output h and target-aware product v_t * h of a split with mini-batch k-means
    and reports I(cluster; label) against the number of clusters (needs scikit-learn: the analysis extra).

Each writes a JSON file and a PNG next to it. Checkpoints load into a model sharded for this run's world
size, so 1 process or several (torchrun) work alike; rank 0 gathers, scores and writes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record
from torchrec.optim.optimizers import in_backward_optimizer_filter
from tqdm import tqdm

from dare_rec.analysis import plots
from dare_rec.analysis.attention import check_order, count_training_split, headline, read_scored_split, \
    score_rankings
from dare_rec.analysis.clustering import CLUSTER_COUNTS, cluster_information
from dare_rec.analysis.collect import collect_split, dare_model, representations, search_rankings
from dare_rec.analysis.conflict import TableGradientStats
from dare_rec.analysis.ranking import SkipRules
from dare_rec.analysis.role_gradients import RoleGradientProbe, StepGradients
from dare_rec.checkpoint import load_model_state, read_checkpoint_info, resolve_checkpoint, verify_on_main
from dare_rec.config import Config, ConfigError, config_help, load_config
from dare_rec.data import schema
from dare_rec.data.parquet import ParquetBatchReader
from dare_rec.data.schema import SPLITS, DataError, DatasetMeta
from dare_rec.distributed import DistEnv, global_sum, init_distributed, shutdown
from dare_rec.optim import build_optimizer
from dare_rec.pipelines.common import build_sharded_model
from dare_rec.pipelines.errors import cli_errors

DEFAULT_DIR = Path("runs/analysis")


def _finite(obj: Any) -> Any:
    """JSON-safe copy: NaN / inf become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _write(result: Dict[str, Any], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(_finite(result), indent=1, sort_keys=True) + "\n")


def run_name(checkpoint: Path) -> str:
    """The run folder's name for a checkpoint folder ``<run>/checkpoints/step-N`` (else the folder's name)."""
    return checkpoint.parent.parent.name if checkpoint.parent.name == "checkpoints" else checkpoint.name


class _Checkpoint:
    """A checkpoint's path, config (data path and eval batch size applied) and the data's meta."""

    def __init__(self, checkpoint: str, data: Optional[str], batch_size: Optional[int]) -> None:
        self.path = resolve_checkpoint(checkpoint)
        self.cfg, self.state = read_checkpoint_info(self.path)
        if data is not None:
            self.cfg.data.path = data
        if batch_size is not None:
            if batch_size <= 0:
                raise ConfigError(f"--batch-size: must be > 0, got {batch_size}")
            self.cfg.data.eval_batch_size = batch_size
        self.meta = DatasetMeta.read(self.cfg.data.path)
        if (self.meta.num_items, self.meta.num_categories) != (self.state["num_items"], self.state["num_categories"]):
            raise DataError(f"{self.cfg.data.path}: vocabulary sizes (items {self.meta.num_items}, categories "
                            f"{self.meta.num_categories}) differ from those of checkpoint {self.path}; the ids "
                            f"would not mean the same things")
        self.name = run_name(self.path)

    def describe(self) -> Dict[str, Any]:
        return {"name": self.name, "checkpoint": str(self.path), "variant": self.cfg.model.variant,
                "step": self.state["step"], "data": self.cfg.data.path}

    def load(self, env: DistEnv) -> torch.nn.Module:
        verify_on_main(self.path, env)  # a damaged checkpoint: one line naming the file, on every rank
        model = build_sharded_model(self.cfg, self.meta, env)
        load_model_state(model, self.path)
        return model

    def reader(self, split: str, env: DistEnv) -> ParquetBatchReader:
        return ParquetBatchReader(self.cfg.data.path, split, self.cfg.data.eval_batch_size, self.cfg.data.max_len,
                                  rank=env.rank, world_size=env.world_size,
                                  prefetch_batches=self.cfg.data.prefetch_batches,
                                  **self.cfg.model.reader_inputs())


def _load_all(checkpoints: Sequence[str], data: Optional[str], batch_size: Optional[int]) -> List[_Checkpoint]:
    loaded = [_Checkpoint(c, data, batch_size) for c in checkpoints]
    names = [c.name for c in loaded]
    if len(set(names)) < len(names):  # same run folder name twice: tell them apart by path
        for c in loaded:
            c.name = str(c.path)
    return loaded


# ---------------------------------------------------------------------------------------------------------
# attention


def analyze_attention(checkpoints: Sequence[str], data: Optional[str] = None, split: str = "test",
                      batch_size: Optional[int] = None, rules: SkipRules = SkipRules(),
                      output: Optional[str] = None, progress: bool = True) -> Optional[Dict[str, Any]]:
    """Scores every checkpoint's search on ``split`` of one dataset; returns the results on rank 0 (None
    elsewhere)."""
    started = time.perf_counter()
    loaded = _load_all(checkpoints, data, batch_size)
    first = loaded[0].cfg.data
    for ckpt in loaded[1:]:
        if (ckpt.cfg.data.path, ckpt.cfg.data.max_len) != (first.path, first.max_len):
            raise ConfigError(f"analyze attention: checkpoints are compared on one dataset and history length; "
                              f"{loaded[0].path} has ({first.path}, max_len {first.max_len}), {ckpt.path} has "
                              f"({ckpt.cfg.data.path}, max_len {ckpt.cfg.data.max_len}) (use --data to choose one)")
    env = init_distributed(loaded[0].cfg.train.dist_timeout_s)
    rankings: Dict[str, Dict[str, np.ndarray]] = {}
    try:
        counts = count_training_split(first.path, loaded[0].meta.num_categories, first.max_len, progress) \
            if env.is_main else None
        rows = read_scored_split(first.path, split, first.max_len, env.world_size,
                                 schema.HIST_RELEVANCE in loaded[0].meta.columns) if env.is_main else None
        for ckpt in loaded:
            model = ckpt.load(env)
            collected = collect_split(model, ckpt.reader(split, env), env, search_rankings,
                                      desc=f"search {ckpt.name}", progress=progress)
            del model
            if env.is_main:
                check_order(collected, rows, f"{first.path} ({split})")
                rankings[ckpt.name] = {k[len("ranking_"):]: v for k, v in collected.items() if k.startswith("ranking_")}
    finally:
        shutdown()
    if not env.is_main:
        return None
    scored = score_rankings(rankings, rows, counts, rules, first.max_len)
    out = Path(output) if output else DEFAULT_DIR / "attention.json"
    results = [{**ckpt.describe(), **scored["checkpoints"][ckpt.name]} for ckpt in loaded]
    summary = {"split": split, "data": first.path, "samples": scored["samples"], "world_size": env.world_size,
               "mutual_information": scored["mutual_information"], "ground_truth": scored.get("ground_truth"),
               "wall_s": time.perf_counter() - started, "checkpoints": results, "output": str(out)}
    _write(summary, out)
    plots.attention_curves(results, out.with_suffix(".png"))
    return summary


def _attention_table(summary: Dict[str, Any]) -> str:
    lines = ["| run | variant | ranking | NDCG@K (truth) | recall@K (truth) | NDCG@K (MI, paper) | MI samples |",
             "|---|---|---|---|---|---|---|"]
    fmt = lambda v: "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4f}"
    for r in summary["checkpoints"]:
        for ranking in r["rankings"]:
            h = headline(r, ranking)
            lines.append(f"| {r['name']} | {r['variant']} | {ranking} | {fmt(h['truth_ndcg_at_K'])} | "
                         f"{fmt(h['truth_recall_at_K'])} | {fmt(h['mi_ndcg_at_K'])} | "
                         f"{r['rankings'][ranking]['mutual_information']['samples']:,} |")
    if summary["checkpoints"]:
        first = summary["checkpoints"][0]
        h = headline({"rankings": first["baselines"]}, "recent")
        lines.append(f"| (data of {first['name']}) | - | baseline: most recent K | {fmt(h['truth_ndcg_at_K'])} | "
                     f"{fmt(h['truth_recall_at_K'])} | {fmt(h['mi_ndcg_at_K'])} | "
                     f"{first['baselines']['recent']['mutual_information']['samples']:,} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# gradients


def _merge_ranks(parts: List[StepGradients], world_size: int) -> Dict[str, Dict[str, Tuple[np.ndarray, np.ndarray]]]:
    """Every rank's per-role row gradients -> the global ones (rows summed per id, averaged over ranks, as
    the gradients that update the tables are)."""
    merged: Dict[str, Dict[str, Tuple[np.ndarray, np.ndarray]]] = {}
    keys = sorted({(t, r) for p in parts for t in p for r in p[t]})
    for table, role in keys:
        pieces = [p[table][role] for p in parts if table in p and role in p[table]]
        ids = np.concatenate([i for i, _ in pieces])
        rows = np.concatenate([g for _, g in pieces]).astype(np.float64)
        unique, inverse = np.unique(ids, return_inverse=True)
        summed = np.zeros((unique.size, rows.shape[1]))
        np.add.at(summed, inverse, rows)
        merged.setdefault(table, {})[role] = (unique, summed / world_size)
    return merged


def analyze_gradients(cfg: Config, record_every: int = 1, output: Optional[str] = None,
                      progress: bool = True) -> Optional[Dict[str, Any]]:
    """Trains ``cfg``'s model like ``dare-rec train`` (same reader order, optimizers and steps: ``train.epochs``
    / ``train.max_steps``; no validation or checkpoint) and records the per-role table gradients every
    ``record_every`` steps. Returns the summary on rank 0 (None elsewhere)."""
    if record_every <= 0:
        raise ConfigError(f"--record-every: must be > 0, got {record_every}")
    started = time.perf_counter()
    meta = DatasetMeta.read(cfg.data.path)
    env = init_distributed(cfg.train.dist_timeout_s)
    stats: Dict[str, TableGradientStats] = {}
    losses: List[Dict[str, float]] = []
    try:
        model = build_sharded_model(cfg, meta, env)
        optimizer = build_optimizer(model, cfg.train)
        reader = ParquetBatchReader(cfg.data.path, "train", cfg.data.batch_size, cfg.data.max_len, rank=env.rank,
                                    world_size=env.world_size, shuffle=True, drop_last=True, seed=cfg.train.seed,
                                    prefetch_batches=cfg.data.prefetch_batches, **cfg.model.reader_inputs())
        total = reader.num_batches() * cfg.train.epochs
        if cfg.train.max_steps:
            total = min(total, cfg.train.max_steps)
        # The DDP wrapper is bypassed (the probe calls the model's parts), so dense gradients are averaged here.
        dense = [p for _, p in in_backward_optimizer_filter(model.named_parameters())]
        probe = RoleGradientProbe(dare_model(model), cfg.model)
        model.train()
        step = 0
        bar = tqdm(total=total, desc=f"train + record gradients ({cfg.model.variant})", unit="step",
                   disable=not (progress and env.is_main), dynamic_ncols=True)
        for epoch in range(cfg.train.epochs):
            batches = reader.epoch(epoch)
            try:
                for batch in batches:
                    if step == total:
                        break
                    step += 1
                    batch = batch.to(env.device)
                    optimizer.zero_grad()
                    loss, grads = probe.step(batch.sparse_features, batch.labels)
                    if env.world_size > 1:
                        for p in dense:
                            if p.grad is None:
                                p.grad = torch.zeros_like(p)
                            dist.all_reduce(p.grad)
                            p.grad /= env.world_size
                    optimizer.step()
                    if step % record_every == 0 or step == total:
                        _record(step, loss, grads, env, stats, losses)
                    bar.update(1)
            finally:
                batches.close()
            if step == total:
                break
        bar.close()
        probe.close()
    finally:
        shutdown()
    if not env.is_main:
        return None
    out = Path(output) if output else DEFAULT_DIR / f"gradients-{cfg.model.variant}.json"
    summary = {"variant": cfg.model.variant, "spec": asdict(cfg.model.spec()), "data": cfg.data.path,
               "steps": step, "record_every": record_every, "world_size": env.world_size,
               "batch_size": cfg.data.batch_size, "sparse_optimizer": cfg.train.sparse_optimizer,
               "sparse_lr": cfg.train.sparse_lr, "dense_lr": cfg.train.dense_lr,
               "wall_s": time.perf_counter() - started, "loss": losses,
               "tables": [stats[name].summary() for name in sorted(stats)], "output": str(out)}
    _write(summary, out)
    plots.gradient_figure(summary, out.with_suffix(".png"))
    return summary


def _record(step: int, loss: torch.Tensor, grads: StepGradients, env: DistEnv,
            stats: Dict[str, TableGradientStats], losses: List[Dict[str, float]]) -> None:
    """Gathers one step's per-role gradients on rank 0 and adds them to the statistics."""
    local = {t: {r: (g.ids.cpu().numpy(), g.rows.cpu().numpy()) for r, g in roles.items()}
             for t, roles in grads.items()}
    gathered: Optional[List[Any]] = [None] * env.world_size if env.is_main else None
    dist.gather_object(local, gathered, dst=0)
    loss_sum, = global_sum([loss.item()], env.device)
    if not env.is_main:
        return
    losses.append({"step": step, "loss": loss_sum / env.world_size})
    for table, roles in _merge_ranks(gathered, env.world_size).items():
        stats.setdefault(table, TableGradientStats(table)).add(step, roles)


def _gradient_table(summary: Dict[str, Any]) -> str:
    lines = [f"**{summary['variant']}**: {summary['steps']} steps, gradients recorded every "
             f"{summary['record_every']}", "",
             "| table | roles | conflicting steps | conflicting row updates | rows mostly conflicting | "
             "mean row cosine | norm ratio rep/att | mean row norm (att / rep) |", "|---|---|---|---|---|---|---|---|"]
    pct = lambda v: "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.1f}%"
    num = lambda v: "n/a" if v is None or not math.isfinite(v) else f"{v:.3g}"
    for t in summary["tables"]:
        norms = " / ".join(num(t.get(f"{r}_mean_row_norm")) if r in t["roles"] else "-" for r in ("att", "rep"))
        lines.append(f"| {t['table']} | {', '.join(t['roles'])} | {pct(t.get('conflicting_step_share'))} | "
                     f"{pct(t.get('conflicting_update_share'))} | {pct(t.get('rows_mostly_conflicting_share'))} | "
                     f"{num(t.get('mean_row_cosine'))} | {num(t.get('norm_ratio'))} | {norms} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# representation


def analyze_representation(checkpoints: Sequence[str], data: Optional[str] = None, split: str = "test",
                           batch_size: Optional[int] = None, cluster_counts: Sequence[int] = CLUSTER_COUNTS,
                           seeds: Sequence[int] = (1,), output: Optional[str] = None,
                           progress: bool = True) -> Optional[Dict[str, Any]]:
    """I(cluster; label) vs k for every checkpoint's representations of ``split``; rank 0 gets the results."""
    started = time.perf_counter()
    if not cluster_counts or min(cluster_counts) < 2:
        raise ConfigError(f"--clusters: numbers of clusters >= 2 expected, got {list(cluster_counts)}")
    if not seeds:
        raise ConfigError("--seeds: at least one seed expected")
    loaded = _load_all(checkpoints, data, batch_size)
    env = init_distributed(loaded[0].cfg.train.dist_timeout_s)
    results = []
    try:
        for ckpt in loaded:
            model = ckpt.load(env)
            collected = collect_split(model, ckpt.reader(split, env), env, representations,
                                      desc=f"representations {ckpt.name}", progress=progress)
            del model
            if not env.is_main:
                continue
            labels = collected["labels"].astype(np.int64)
            reps = {name: cluster_information(collected[name], labels, cluster_counts, seeds, progress,
                                              desc=f"k-means {ckpt.name} {name}")
                    for name in ("esu", "target_aware")}
            results.append({**ckpt.describe(), "samples": int(labels.size),
                            "target_aware_in_model": ckpt.cfg.model.spec().target_aware, "representations": reps})
    finally:
        shutdown()
    if not env.is_main:
        return None
    out = Path(output) if output else DEFAULT_DIR / "representation.json"
    summary = {"split": split, "world_size": env.world_size, "wall_s": time.perf_counter() - started,
               "checkpoints": results, "output": str(out)}
    _write(summary, out)
    plots.representation_curves(results, out.with_suffix(".png"))
    return summary


def _representation_table(summary: Dict[str, Any]) -> str:
    first = summary["checkpoints"][0]["representations"]["esu"]
    ks = first["k"]
    lines = ["| run | representation | " + " | ".join(f"k={k}" for k in ks) + " |",
             "|---|---|" + "---|" * len(ks)]
    for r in summary["checkpoints"]:
        for name, rep in r["representations"].items():
            lines.append(f"| {r['name']} | {name} | " + " | ".join(f"{v:.4f}" for v in rep["mi_bits"]["mean"]) + " |")
    return "\n".join(lines) + f"\n\nI(cluster; label) in bits; H(label) = {first['label_entropy_bits']:.4f} bits."


# ---------------------------------------------------------------------------------------------------------
# command line


def _int_list(text: str) -> List[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated integers expected, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dare-rec analyze", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="kind", required=True, metavar="KIND")

    def checkpoint_args(p: argparse.ArgumentParser, kind: str) -> None:
        p.add_argument("--checkpoint", nargs="+", required=True,
                       help="checkpoint folders or run output_dirs (their latest checkpoint); one line each in the plot")
        p.add_argument("--data", help="dataset folder (default: the one each checkpoint was trained on)")
        p.add_argument("--split", default="test", choices=SPLITS)
        p.add_argument("--batch-size", type=int, help="samples per batch per rank (default: data.eval_batch_size)")
        p.add_argument("--output", help=f"JSON file (default: {DEFAULT_DIR}/{kind}.json); the PNG goes next to it")

    att = sub.add_parser("attention", help="search quality: NDCG@k / recall@k vs ground truth and MI gains")
    checkpoint_args(att, "attention")
    defaults = SkipRules()
    att.add_argument("--min-target-samples", type=int, default=defaults.min_target_samples,
                     help="MI gains: skip targets whose category has fewer training samples (paper: %(default)s)")
    att.add_argument("--min-count", type=int, default=defaults.min_count,
                     help="MI gains: a behavior is sparse when fewer positive or negative training samples of the "
                          "target's category share its category and position (paper: %(default)s)")
    att.add_argument("--max-sparse-behaviors", type=int, default=defaults.max_sparse_behaviors,
                     help="MI gains: skip samples with more sparse behaviors (paper: %(default)s)")

    grad = sub.add_parser("gradients", help="gradient conflict and domination while training from scratch",
                          epilog=config_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    grad.add_argument("--config", help="YAML preset (configs/*.yaml); --section.field value overrides follow")
    grad.add_argument("--record-every", type=int, default=1, help="record the gradients every n steps")
    grad.add_argument("--output", help=f"JSON file (default: {DEFAULT_DIR}/gradients-<variant>.json)")

    rep = sub.add_parser("representation", help="I(cluster; label) of ESU outputs under mini-batch k-means")
    checkpoint_args(rep, "representation")
    rep.add_argument("--clusters", type=_int_list, default=list(CLUSTER_COUNTS),
                     help="numbers of clusters, comma-separated (default: the paper's %(default)s)")
    rep.add_argument("--seeds", type=_int_list, default=[1], help="k-means seeds, comma-separated")
    return parser


@record
@cli_errors
def main(argv: Optional[List[str]] = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    if extra and args.kind != "gradients":
        raise ConfigError(f"analyze {args.kind}: unknown arguments {' '.join(extra)}")
    if args.kind == "attention":
        rules = SkipRules(args.min_target_samples, args.min_count, args.max_sparse_behaviors)
        summary = analyze_attention(args.checkpoint, args.data, args.split, args.batch_size, rules, args.output)
        table = None if summary is None else _attention_table(summary)
    elif args.kind == "gradients":
        summary = analyze_gradients(load_config(args.config, extra), args.record_every, args.output)
        table = None if summary is None else _gradient_table(summary)
    else:
        summary = analyze_representation(args.checkpoint, args.data, args.split, args.batch_size, args.clusters,
                                         args.seeds, args.output)
        table = None if summary is None else _representation_table(summary)
    if summary is not None:
        print(table)
        print(f"\nwrote {summary['output']} and {Path(summary['output']).with_suffix('.png')} "
              f"in {summary['wall_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
