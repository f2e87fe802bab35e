"""CLI error handling shared by the jobs, in its own module so light jobs (prepare) need not import torch."""

from __future__ import annotations

import functools
import sys
from typing import Callable

from dare_rec.config import ConfigError
from dare_rec.data.schema import DataError


def cli_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Turns configuration and data errors into one clear line on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except (ConfigError, DataError) as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper
