"""Custom ops behind one dispatcher each (reference implementations in ``dare_rec.ops.pytorch``)."""

from dare_rec.ops.gsu_topk import GsuOutput, gsu_topk
from dare_rec.ops.jagged import jagged_gather, jagged_weighted_sum
from dare_rec.ops.jagged_topk import jagged_topk
from dare_rec.ops.kernel import Kernel

__all__ = ["GsuOutput", "Kernel", "gsu_topk", "jagged_gather", "jagged_topk", "jagged_weighted_sum"]
