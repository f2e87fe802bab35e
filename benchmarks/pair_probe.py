"""How much of a planted pair term a trained model's logit carries (docs/side-info.md, "Stacked TIN").

The pair world (``configs/side_info_pair.yaml``) adds ``pair_weight`` to the click logit when the last
``pair_window`` behaviors hold both the target's category and its partner; the test split stores that term per
sample (``pair_bonus``) next to the true click probability (``click_prob``). For every run this fits, by least
squares over the test split,

    model logit ~ a + b * (true logit - pair_bonus) + c * [pair_bonus > 0]

so ``b`` says how much of the pair-blind click model the run recovered and ``c`` how much of the planted pair
term it carries on top (a model that read the pair fully would give ``c`` near ``b * pair_weight``).

For a run with one attention head it also says where the model puts the pair's partner (a behavior of category
pi(target category) among the last ``pair_window``) in the test samples that carry the term: how often the
search selects one, and the weight ESU layer 1 gives it against the target category's behaviors
(``dare_rec.analysis.planted_terms.partner_selection``); for stacked TIN the same of layer 2's own search and
weights (keys ``layer2_*``). pi is rebuilt from the dataset's
meta.json params (``dare_rec.data.synthetic.planted_pair_map``).

    python -m benchmarks.pair_probe --data data/side_info_pair RUN_DIR [RUN_DIR ...] \\
        --output runs/benchmarks/pair_probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from dare_rec.analysis.planted_terms import pair_coefficients, partner_selection
from dare_rec.config import SyntheticConfig
from dare_rec.data.parquet import ParquetBatchReader, keep_most_recent
from dare_rec.data.schema import PAIR_BONUS, DatasetMeta
from dare_rec.data.synthetic import planted_pair_map


def split_columns(data: Path, split: str = "test") -> Dict[str, np.ndarray]:
    """``click_prob``, ``pair_bonus``, ``target_cate`` and the histories' categories (``hist_cate`` values and
    ``hist_offsets``) of every sample of ``split``, in file order (the reader's order)."""
    files = sorted((data / split).glob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f, columns=["click_prob", PAIR_BONUS, "target_cate", "hist_cate"])
                              for f in files])
    hist = table["hist_cate"].combine_chunks()
    return {"click_prob": table["click_prob"].to_numpy(), PAIR_BONUS: table[PAIR_BONUS].to_numpy(),
            "target_cate": table["target_cate"].to_numpy(), "hist_cate": hist.flatten().to_numpy(),
            "hist_offsets": hist.offsets.to_numpy() - hist.offsets[0].as_py()}


def last_behaviors(values: np.ndarray, offsets: np.ndarray, max_len: int) -> Tuple[np.ndarray, np.ndarray]:
    """The histories cut to their last ``max_len`` behaviors, as the reader feeds them: ``(values, offsets)``."""
    lengths = np.diff(offsets)
    return values[keep_most_recent(lengths, max_len)], np.concatenate([[0], np.cumsum(np.minimum(lengths, max_len))])


def run_logits(run: Path, data: Path, split: str = "test") -> Dict[str, object]:
    """The logits and click probabilities of ``run``'s best checkpoint over ``split``, in file order, and (one
    attention head) each sample's selection per ESU layer: ``selected``/``valid``/``layer1`` ``[n, K]`` (slots,
    mask, weights), with two layers also ``selected2``/``valid2``/``layer2``, layer 2's search."""
    from dare_rec.checkpoint import load_model_state, pick_checkpoint, read_checkpoint_info
    from dare_rec.distributed import init_distributed, shutdown
    from dare_rec.modules.search import ExactSearchUnit, masked_softmax
    from dare_rec.pipelines.common import build_sharded_model, predict

    path, _ = pick_checkpoint(str(run), "best")
    cfg, _ = read_checkpoint_info(path)
    cfg.data.path = str(data)
    seen: List[Dict[str, np.ndarray]] = []

    def record(esu: torch.nn.Module, args: tuple, kwargs: dict, _output: torch.Tensor) -> None:
        """The ESU's input (each layer's search): the weights it gives the selected behaviors, as its forward
        computes them."""
        batch = {}
        for suffix, layer, search in (("", 1, args[0]), ("2", 2, kwargs.get("second"))):
            if search is not None:
                weights = masked_softmax(search.scores.gather(-1, search.top_indices), search.top_mask)
                batch.update({f"selected{suffix}": search.top_indices, f"valid{suffix}": search.top_mask,
                              f"layer{layer}": weights})
        seen.append({k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in batch.items()})

    env = init_distributed(cfg.train.dist_timeout_s)
    try:
        model = build_sharded_model(cfg, DatasetMeta.read(str(data)), env)
        load_model_state(model, path)
        (esu,) = [m for m in model.modules() if isinstance(m, ExactSearchUnit)]
        if esu.heads == 1:
            esu.register_forward_hook(record, with_kwargs=True)
        reader = ParquetBatchReader(str(data), split, cfg.data.eval_batch_size, cfg.data.max_len,
                                    **cfg.model.reader_inputs())
        outputs = predict(model, reader, env, f"probe {run.name}", progress=False)
    finally:
        shutdown()
    order = np.argsort(outputs["sample_ids"])
    result: Dict[str, object] = {"logits": outputs["logits"][order], "click_prob": outputs["click_probs"][order],
                                 "max_len": cfg.data.max_len}
    if seen:
        result["selection"] = {k: np.concatenate([b[k] for b in seen])[order] for k in seen[0]}
    return result


def selection_row(scored: Dict[str, object], columns: Dict[str, np.ndarray], pi: np.ndarray,
                  window: int) -> Dict[str, float]:
    """:func:`partner_selection` of each ESU layer's search over the samples that carry the pair term (layer 2's
    keys prefixed ``layer2_``)."""
    values, offsets = last_behaviors(columns["hist_cate"], columns["hist_offsets"], scored["max_len"])
    sel = scored["selection"]
    target = columns["target_cate"]
    row: Dict[str, float] = {}
    for suffix, layer in (("", 1), ("2", 2)):
        if f"layer{layer}" in sel:
            part = partner_selection(sel[f"selected{suffix}"], sel[f"valid{suffix}"].astype(bool),
                                     {f"layer{layer}": sel[f"layer{layer}"]}, values, offsets, pi[target], target,
                                     window, columns[PAIR_BONUS] > 0)
            row.update({k if layer == 1 or k.startswith("layer") or k == "samples" else f"layer{layer}_{k}": v
                        for k, v in part.items()})
    return row


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="training runs' output_dir (their best checkpoint is read)")
    parser.add_argument("--data", required=True, help="the pair world's dataset (its test split has pair_bonus)")
    parser.add_argument("--output", required=True, help="JSON path")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    data = Path(args.data)
    columns = split_columns(data)
    params = DatasetMeta.read(str(data)).params
    # the world's config from its meta.json (a field newer than the dataset keeps its default)
    world = SyntheticConfig(**{f.name: params[f.name] for f in fields(SyntheticConfig) if f.name in params})
    pi = planted_pair_map(world)
    rows = []
    for run in map(Path, args.runs):
        scored = run_logits(run, data)
        if not np.allclose(scored["click_prob"], columns["click_prob"]):
            raise SystemExit(f"{run}: the reader's samples do not line up with {data / 'test'} in file order")
        row = {"run": str(run), **pair_coefficients(scored["logits"], columns["click_prob"], columns[PAIR_BONUS])}
        print(f"{run.name}: logit ~ {row['intercept']:+.3f} + {row['blind']:.3f} * blind + {row['pair']:.3f} * pair "
              f"(planted: +{row['planted']:.1f} on {row['pair_share']:.1%} of the samples)", flush=True)
        if "selection" in scored:
            row["partner"] = selection_row(scored, columns, pi, world.pair_window)
            print(f"{run.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row["partner"].items()), flush=True)
        rows.append(row)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "pair_probe", "data": str(data), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
