"""Raw logs for scale tests: ``dare-rec make-raw-logs --format taobao --rows 10000000 --out PATH``.

Writes a file in the Taobao (``UserBehavior.csv``), Tmall (``user_log_format1.csv``) or generic event-log
format with Zipf-like item popularity and long-tailed user histories (see dare_rec.data.raw_logs), so
``dare-rec prepare`` can be exercised at full-dataset scale without the real files. Same arguments, same bytes.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

from dare_rec.data.raw_logs import RAW_FORMATS, RawLogSpec, generate_raw_log


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dare-rec make-raw-logs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", required=True, choices=RAW_FORMATS)
    parser.add_argument("--rows", required=True, type=int, help="number of data rows")
    parser.add_argument("--out", required=True, help="output file (events: .parquet for Parquet, else CSV)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mean-len", type=float, default=100.0, help="mean rows per user (log-normal)")
    parser.add_argument("--len-sigma", type=float, default=0.94, help="sigma of the log-normal user length")
    parser.add_argument("--items", type=int, help="number of items (default: rows / 24)")
    parser.add_argument("--categories", type=int, help="number of categories (default: items / 440)")
    parser.add_argument("--zipf", type=float, default=1.0, help="item popularity ~ 1 / rank ** zipf")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("rows", "items", "categories"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "rows" else 1):
            parser.error(f"--{name} must be {'>= 0' if name == 'rows' else '>= 1'}, got {value}")
    if args.mean_len < 1 or args.len_sigma < 0 or args.zipf < 0:
        parser.error("--mean-len must be >= 1, --len-sigma and --zipf >= 0")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    spec = RawLogSpec(fmt=args.format, rows=args.rows, seed=args.seed, mean_len=args.mean_len,
                      len_sigma=args.len_sigma, items=args.items, categories=args.categories, zipf=args.zipf)
    started = time.perf_counter()
    path = generate_raw_log(spec, args.out, progress=not args.quiet)
    print(f"wrote {args.rows:,} {args.format} rows to {path} ({path.stat().st_size / 1e6:,.1f} MB) "
          f"in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
