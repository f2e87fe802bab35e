"""Raw logs: ``dare-rec make-raw-logs --format taobao --rows 10000000 --out PATH`` (scale tests),
``dare-rec make-raw-logs --format taobao --planted --users 1536 --out PATH`` or
``dare-rec make-raw-logs --format taobao --dense-catalog --users 512 --out PATH`` (accuracy checks).

Without ``--planted``: a file in the Taobao (``UserBehavior.csv``), Tmall (``user_log_format1.csv``) or
generic event-log format with Zipf-like item popularity and long-tailed user histories, so ``dare-rec
prepare`` can be exercised at full-dataset scale without the real files.

With ``--planted`` (Taobao format only): ``--users`` users whose drifting category interests drive their
next clicks (a click copies the category, sometimes the item, of a recent click, or follows the user's
interests; items by popularity within the category), so a dataset prepared from it with the paper's protocol
rewards reading the history. See dare_rec.data.raw_logs.generate_planted_log.

With ``--dense-catalog`` (Taobao format only): a small catalog (default 1,700 items in 19 categories, Zipf 1.0)
that every user keeps returning to, with latent item vectors: each click favours items similar to the user's
recent clicks, so the signal sits in item embeddings learnt from hundreds of sightings each, as in a real
log cut to a few categories. See dare_rec.data.raw_logs.generate_dense_catalog_log.

Same arguments, same bytes.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

from dare_rec.data.raw_logs import (RAW_FORMATS, DenseCatalogLogSpec, PlantedLogSpec, RawLogSpec,
                                    generate_dense_catalog_log, generate_planted_log, generate_raw_log)

_PLANTED_ONLY = ("interests", "interest_drift", "recency", "recency_scale", "item_repeat", "exploration",
                 "intent_copy")
_DENSE_ONLY = ("latent_dim", "affinity", "interest_step")
_USER_MODES = ("users", "min_len")  # either --planted or --dense-catalog


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dare-rec make-raw-logs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", required=True, choices=RAW_FORMATS)
    parser.add_argument("--rows", type=int, help="number of data rows (required without --planted)")
    parser.add_argument("--out", required=True, help="output file (events: .parquet for Parquet, else CSV)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mean-len", type=float,
                        help="mean rows per user, log-normal (default 100); --planted: mean clicks per user "
                             "(default 70); --dense-catalog: mean clicks per user (default 100)")
    parser.add_argument("--len-sigma", type=float, default=0.94, help="sigma of the log-normal user length")
    parser.add_argument("--items", type=int,
                        help="number of items (default: rows / 24; --planted: 10000; --dense-catalog: 1700)")
    parser.add_argument("--categories", type=int,
                        help="number of categories (default: items / 440; --planted: 100; --dense-catalog: 19)")
    parser.add_argument("--zipf", type=float,
                        help="item popularity ~ 1 / rank ** zipf (default 1; --planted: 0.8; --dense-catalog: 1)")
    planted = parser.add_argument_group("planted structure (--planted)")
    planted.add_argument("--planted", action="store_true",
                         help="users whose drifting interests drive their next clicks (Taobao format)")
    planted.add_argument("--users", type=int, help="number of users (required with --planted and --dense-catalog)")
    planted.add_argument("--min-len", type=int, help="fewest clicks per user (default 60; also --dense-catalog)")
    planted.add_argument("--interests", type=int, help="interest categories per user (default 6)")
    planted.add_argument("--interest-drift", type=float, help="per-click probability that an interest is replaced "
                                                              "(default 0.03)")
    planted.add_argument("--recency", type=float,
                         help="per-click probability of copying a recent click's category (default 0.3)")
    planted.add_argument("--recency-scale", type=float, help="mean lag in clicks of the copied click (default 5)")
    planted.add_argument("--item-repeat", type=float, help="share of copies that re-click the item (default 0.05)")
    planted.add_argument("--exploration", type=float,
                         help="per-click probability of a category drawn by popularity (default 0.3)")
    planted.add_argument("--intent-copy", type=float,
                         help="per-click probability of copying the category of the last click that got a "
                              "cart/fav/buy row: a planted behavior-type effect (default 0: off)")
    dense = parser.add_argument_group("dense catalog (--dense-catalog)")
    dense.add_argument("--dense-catalog", action="store_true",
                       help="a small catalog with latent item similarity driving the next click (Taobao format)")
    dense.add_argument("--latent-dim", type=int, help="dimension of the latent item vectors (default 32)")
    dense.add_argument("--affinity", type=float, help="weight of the user's interest in the click logits (default 4)")
    dense.add_argument("--interest-step", type=float,
                       help="how far the interest moves towards each clicked item, in [0, 1] (default 0.5)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    mode = "--planted" if args.planted else "--dense-catalog" if args.dense_catalog else None
    if args.planted and args.dense_catalog:
        parser.error("--planted and --dense-catalog are two generators: pick one")
    only = {"--planted": _PLANTED_ONLY, "--dense-catalog": _DENSE_ONLY}
    for owner, names in only.items():
        given = [name for name in names if getattr(args, name) is not None]
        if given and mode != owner:
            parser.error(f"--{given[0].replace('_', '-')} only applies with {owner}")
    if mode is not None:
        if args.format != "taobao":
            parser.error(f"{mode} writes the taobao format only, got --format {args.format}")
        if args.users is None or args.rows is not None:
            parser.error(f"{mode} takes --users (number of users), not --rows")
    else:
        if args.rows is None:
            parser.error("--rows is required (or use --planted / --dense-catalog --users N)")
        given = [name for name in _USER_MODES if getattr(args, name) is not None]
        if given:
            parser.error(f"--{given[0].replace('_', '-')} only applies with --planted or --dense-catalog")
    for name in ("rows", "items", "categories", "users"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "rows" else 1):
            parser.error(f"--{name} must be {'>= 0' if name == 'rows' else '>= 1'}, got {value}")
    if (args.mean_len is not None and args.mean_len < 1) or args.len_sigma < 0 or (args.zipf or 0) < 0:
        parser.error("--mean-len must be >= 1, --len-sigma and --zipf >= 0")
    if mode is not None:
        try:
            user_spec(args)
        except ValueError as e:
            parser.error(f"--{e}".replace("_", "-"))
    return args


def user_spec(args: argparse.Namespace) -> PlantedLogSpec | DenseCatalogLogSpec:
    """The PlantedLogSpec (``--planted``) or DenseCatalogLogSpec (``--dense-catalog``) of the parsed arguments
    (unset flags keep the spec's defaults); ValueError if invalid."""
    own, cls = (_PLANTED_ONLY, PlantedLogSpec) if args.planted else (_DENSE_ONLY, DenseCatalogLogSpec)
    given = {name: getattr(args, name) for name in own + _USER_MODES + ("mean_len", "items", "categories", "zipf")
             if getattr(args, name) is not None}
    spec = cls(seed=args.seed, len_sigma=args.len_sigma, **given)
    spec.validate()
    return spec


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.planted:
        path = generate_planted_log(user_spec(args), args.out, progress=not args.quiet)
        what = f"{args.users:,} planted-structure users"
    elif args.dense_catalog:
        path = generate_dense_catalog_log(user_spec(args), args.out, progress=not args.quiet)
        what = f"{args.users:,} dense-catalog users"
    else:
        spec = RawLogSpec(fmt=args.format, rows=args.rows, seed=args.seed, mean_len=args.mean_len or 100.0,
                          len_sigma=args.len_sigma, items=args.items, categories=args.categories,
                          zipf=1.0 if args.zipf is None else args.zipf)
        path = generate_raw_log(spec, args.out, progress=not args.quiet)
        what = f"{args.rows:,} {args.format} rows"
    print(f"wrote {what} to {path} ({path.stat().st_size / 1e6:,.1f} MB) in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
