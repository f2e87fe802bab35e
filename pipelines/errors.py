"""CLI error handling shared by the jobs, in its own module so light jobs (prepare) need not import torch."""

from __future__ import annotations

import functools
import sys
from typing import Callable

from dare_rec.config import ConfigError
from dare_rec.data.schema import DataError
from dare_rec.manifest import CheckpointError
from dare_rec.quiet import quiet_known_warnings


class NonFiniteError(FloatingPointError):
    """A training loss or an evaluation logit is not finite; the message says where and what to change."""


# Errors a job reports as one line on stderr with exit status 2 (no traceback): the input (a config, a dataset,
# a checkpoint) was refused or the model diverged. Every other exception is a bug or an outside failure and
# keeps its traceback.
CLEAR_ERRORS = (ConfigError, DataError, CheckpointError, NonFiniteError)


def cli_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Turns configuration, data, checkpoint and non-finite errors into one clear line on stderr and exit status
    2 (and first silences the library warnings known to be harmless here: dare_rec/quiet.py)."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        quiet_known_warnings()
        try:
            return main(*args, **kwargs)
        except CLEAR_ERRORS as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper
