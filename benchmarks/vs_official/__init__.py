"""Side by side with the DARE paper's reference code (thuml/DARE): ``python -m benchmarks.vs_official MODE``.

* ``accuracy`` (:mod:`benchmarks.vs_official.accuracy`): the same prepared dataset, seeds, global batch size,
  epochs and validation cadence, trained by both codes and scored on the test split; every finished run cached.
* ``throughput`` (:mod:`benchmarks.vs_official.throughput`): training samples/s of both codes at one shape, in
  one process, interleaved.

Both read the user's checkout of the reference code (``git clone https://github.com/thuml/DARE ~/DARE``, then
``--official-repo ~/DARE``) through :mod:`benchmarks.vs_official.reference` and never modify it.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from benchmarks.vs_official import accuracy, throughput
from benchmarks.vs_official.reference import HarnessError
from dare_rec.config import ConfigError

TOOLS = {"accuracy": (accuracy, "test AUC of both codes on one dataset over seeds"),
         "throughput": (throughput, "training samples/s of both codes at one shape, per d_att")}


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.vs_official", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)
    subparsers = {}
    for name, (module, help_text) in TOOLS.items():
        subparsers[name] = modes.add_parser(name, help=help_text, description=module.__doc__,
                                            formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(subparsers[name])
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    TOOLS[args.mode][0].check_arguments(args, subparsers[args.mode])
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    module = TOOLS[args.mode][0]
    try:
        return getattr(module, args.mode)(args)
    except (HarnessError, ConfigError, ValueError) as e:
        print(f"vs_official: error: {e}", file=sys.stderr)
        return 2
