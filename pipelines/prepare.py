"""Data preparation: ``dare-rec prepare --source synthetic [--config PRESET] [--out PATH]``.

Writes the Parquet data contract (train/val/test + meta.json, DESIGN.md §3) to ``--out`` (default:
``data.path`` of the config). ``synthetic`` generates data with planted structure and known click
probabilities from the config's ``synthetic`` section; the same config and seed give byte-identical files.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from dare_rec.config import config_help, load_config
from dare_rec.data.synthetic import generate
from pipelines.common import cli_errors

SOURCES = ("synthetic",)


def parse_args(argv: Optional[List[str]]) -> tuple[argparse.Namespace, List[str]]:
    parser = argparse.ArgumentParser(prog="dare-rec prepare", description=__doc__, epilog=config_help(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, choices=SOURCES)
    parser.add_argument("--config", help="YAML preset whose synthetic/data sections apply")
    parser.add_argument("--out", help="output dataset folder (default: data.path of the config)")
    return parser.parse_known_args(argv)


@cli_errors
def main(argv: Optional[List[str]] = None) -> int:
    args, overrides = parse_args(argv)
    cfg = load_config(args.config, overrides)
    generate(cfg.synthetic, args.out or cfg.data.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
