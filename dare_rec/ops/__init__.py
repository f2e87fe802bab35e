"""Custom ops behind one dispatcher each (reference implementations in ``dare_rec.ops.pytorch``, Triton fast
paths in ``dare_rec.ops.triton``).

Names are resolved lazily (module ``__getattr__``), so ``dare_rec.ops.kernel`` can be imported without torch:
the configuration validates ``model.op_kernel`` against :class:`Kernel` and ``dare-rec prepare`` never
loads torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "GsuOutput": "dare_rec.ops.gsu",
    "gsu_topk": "dare_rec.ops.gsu",
    "jagged_gather": "dare_rec.ops.jagged",
    "jagged_layout": "dare_rec.ops.jagged",
    "jagged_topk": "dare_rec.ops.jagged",
    "jagged_weighted_sum": "dare_rec.ops.jagged",
    "Kernel": "dare_rec.ops.kernel",
    "row_topk": "dare_rec.ops.topk",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from dare_rec.ops.gsu import GsuOutput, gsu_topk
    from dare_rec.ops.jagged import jagged_gather, jagged_layout, jagged_topk, jagged_weighted_sum
    from dare_rec.ops.kernel import Kernel
    from dare_rec.ops.topk import row_topk


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
