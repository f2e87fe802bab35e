"""How much of a planted pair term a trained model's logit carries (docs/side-info.md, "Stacked TIN").

The pair world (``configs/side_info_pair.yaml``) adds ``pair_weight`` to the click logit when the last
``pair_window`` behaviors hold both the target's category and its partner; the test split stores that term per
sample (``pair_bonus``) next to the true click probability (``click_prob``). For every run this fits, by least
squares over the test split,

    model logit ~ a + b * (true logit - pair_bonus) + c * [pair_bonus > 0]

so ``b`` says how much of the pair-blind click model the run recovered and ``c`` how much of the planted pair
term it carries on top (a model that read the pair fully would give ``c`` near ``b * pair_weight``).

    python -m benchmarks.pair_probe --data data/side_info_pair RUN_DIR [RUN_DIR ...] \\
        --output runs/benchmarks/pair_probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dare_rec.analysis.planted_terms import pair_coefficients
from dare_rec.data.schema import PAIR_BONUS


def split_columns(data: Path, split: str = "test") -> Dict[str, np.ndarray]:
    """``click_prob`` and ``pair_bonus`` of every sample of ``split``, in file order (the reader's order)."""
    files = sorted((data / split).glob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f, columns=["click_prob", PAIR_BONUS]) for f in files])
    return {"click_prob": table["click_prob"].to_numpy(), PAIR_BONUS: table[PAIR_BONUS].to_numpy()}


def run_logits(run: Path, data: Path, split: str = "test") -> Dict[str, np.ndarray]:
    """The logits and click probabilities of ``run``'s best checkpoint over ``split``, in file order."""
    from dare_rec.checkpoint import load_model_state, pick_checkpoint, read_checkpoint_info
    from dare_rec.data.parquet import ParquetBatchReader
    from dare_rec.data.schema import DatasetMeta
    from dare_rec.distributed import init_distributed, shutdown
    from dare_rec.pipelines.common import build_sharded_model, predict

    path, _ = pick_checkpoint(str(run), "best")
    cfg, _ = read_checkpoint_info(path)
    cfg.data.path = str(data)
    env = init_distributed(cfg.train.dist_timeout_s)
    try:
        model = build_sharded_model(cfg, DatasetMeta.read(str(data)), env)
        load_model_state(model, path)
        reader = ParquetBatchReader(str(data), split, cfg.data.eval_batch_size, cfg.data.max_len,
                                    **cfg.model.reader_inputs())
        outputs = predict(model, reader, env, f"probe {run.name}", progress=False)
    finally:
        shutdown()
    order = np.argsort(outputs["sample_ids"])
    return {"logits": outputs["logits"][order], "click_prob": outputs["click_probs"][order]}


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
    rows = []
    for run in map(Path, args.runs):
        scored = run_logits(run, data)
        if not np.allclose(scored["click_prob"], columns["click_prob"]):
            raise SystemExit(f"{run}: the reader's samples do not line up with {data / 'test'} in file order")
        row = {"run": str(run), **pair_coefficients(scored["logits"], columns["click_prob"], columns[PAIR_BONUS])}
        rows.append(row)
        print(f"{run.name}: logit ~ {row['intercept']:+.3f} + {row['blind']:.3f} * blind + {row['pair']:.3f} * pair "
              f"(planted: +{row['planted']:.1f} on {row['pair_share']:.1%} of the samples)", flush=True)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "pair_probe", "data": str(data), "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
