"""Triton fast paths of the custom ops (``Kernel.TRITON``), each an autograd.Function with Triton forward and
backward kernels, parity-tested against the PyTorch references (``tests/ops/test_triton_parity.py``).

Importing this package imports triton (the optional ``[triton]`` extra); the dispatchers import it only when
the Triton kernel is chosen (see ``dare_rec.ops.kernel``). On CPU the kernels run under the Triton interpreter
(``TRITON_INTERPRET=1`` set before triton itself is first imported, which torchrec does): slow, used for the
parity tests.
"""

from dare_rec.ops.triton.triton_gsu_topk import triton_gsu_topk, triton_jagged_topk
from dare_rec.ops.triton.triton_jagged import triton_jagged_gather, triton_jagged_weighted_sum

__all__ = ["triton_gsu_topk", "triton_jagged_gather", "triton_jagged_topk", "triton_jagged_weighted_sum"]
