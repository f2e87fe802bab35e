"""Data preparation: ``dare-rec prepare --source {synthetic,taobao,tmall,events} [--input PATH] [--out PATH]``.

Writes the Parquet data contract (train/val/test + meta.json, docs/design.md §3) to ``--out`` (default:
``data.path`` of the config).

* ``synthetic`` generates data with planted structure and known click probabilities from the config's
  ``synthetic`` section.
* ``taobao`` (``UserBehavior.csv``), ``tmall`` (``user_log_format1.csv``) and ``events`` (a generic CSV or
  Parquet event log, column names in ``logs.event_*``) preprocess a raw log of ``--input`` with the paper's
  protocol, every knob in the config's ``logs`` section (``--logs.min_len 50``, ``--logs.skip_malformed true``);
  see docs/real-data.md.

The same input, config and seed give byte-identical Parquet files. The dataset is written beside ``--out``
and swapped in only when complete and verified, so a kill or an error leaves the folder as it was; a
non-empty ``--out`` that is not a dataset of ours (or holds files prepare did not write) is refused unless
``--overwrite`` is given (``dare_rec/data/publish.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from dare_rec.config import ConfigError, config_help, load_config
from dare_rec.data.logs import format_summary, prepare_logs
from dare_rec.data.synthetic import generate
from dare_rec.pipelines.errors import cli_errors

SOURCES = ("synthetic", "taobao", "tmall", "events")


def parse_args(argv: Optional[List[str]]) -> tuple[argparse.Namespace, List[str]]:
    parser = argparse.ArgumentParser(prog="dare-rec prepare", description=__doc__, epilog=config_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, choices=SOURCES)
    parser.add_argument("--input", help="raw log file (required for taobao, tmall and events)")
    parser.add_argument("--config", help="YAML preset whose synthetic/logs/data sections apply")
    parser.add_argument("--out", help="output dataset folder (default: data.path of the config)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out even when it is not a dataset of ours or holds files prepare did not "
                             "write (they are deleted)")
    parser.add_argument("--summary-json", help="also write the run summary (counts, time, peak memory) here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_known_args(argv)


@cli_errors
def main(argv: Optional[List[str]] = None) -> int:
    args, overrides = parse_args(argv)
    cfg = load_config(args.config, overrides)
    out = args.out or cfg.data.path
    if args.source == "synthetic":
        if args.input is not None:
            raise ConfigError("--input: only the log sources (taobao, tmall, events) read an input file")
        generate(cfg.synthetic, out, progress=not args.quiet, overwrite=args.overwrite)
        return 0
    if args.input is None:
        raise ConfigError(f"--input: required for --source {args.source} (the raw log file)")
    if not Path(args.input).exists():
        raise ConfigError(f"--input: file {args.input!r} does not exist")
    if not Path(args.input).is_file():
        raise ConfigError(f"--input: {args.input!r} is not a file")
    _, summary = prepare_logs(args.source, args.input, out, cfg.logs, progress=not args.quiet,
                              overwrite=args.overwrite)
    print(format_summary(args.source, out, summary))
    if args.summary_json:
        Path(args.summary_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary_json).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
