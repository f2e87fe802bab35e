"""Row-sparse Adam for the sharded tables on CPU, where FBGEMM has no Adam kernel.

TorchRec's fused kernels (``BatchedFusedEmbedding`` / ``BatchedFusedEmbeddingBag``) build one FBGEMM
``SplitTableBatchedEmbeddingBagsCodegen`` per group of tables and apply the table optimizer inside its
backward. FBGEMM's CPU build implements that backward for Adagrad, row-wise Adagrad and SGD only. While
:func:`cpu_row_sparse_adam` is active (around ``DistributedModelParallel``'s construction), TorchRec builds
:class:`RowSparseAdamTables` instead: FBGEMM's class, unchanged for every other optimizer and device, which
for Adam on CPU runs FBGEMM's forward and replaces its backward by ``dare_rec.ops.row_sparse_adam`` (the
semantics of FBGEMM's CUDA Adam with per-row bias correction, which the CUDA path uses).

Its state (``exp_avg``, ``exp_avg_sq``, ``row_counter``, named as FBGEMM names its Adam state) is exposed
through FBGEMM's optimizer-state accessors, so TorchRec's fused optimizer shards it, checkpoints it with DCP
and reshards it on load exactly as it does the CUDA kernel's.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any, Iterator, List, Optional, Sequence

import torch
from fbgemm_gpu.split_embedding_configs import EmbOptimType
from fbgemm_gpu.split_table_batched_embeddings_ops_common import PoolingMode
from fbgemm_gpu.split_table_batched_embeddings_ops_training import ComputeDevice, SplitTableBatchedEmbeddingBagsCodegen
from fbgemm_gpu.split_table_batched_embeddings_ops_training_common import generate_vbe_metadata
from torchrec.distributed import batched_embedding_kernel

from dare_rec.ops.kernel import UpdateKernel
from dare_rec.ops.row_sparse_adam import row_sparse_adam_

# Extra fused parameter (an optimizer kwarg of the tables) naming the update kernel; consumed here, never
# passed to FBGEMM.
KERNEL_PARAM = "row_sparse_adam_kernel"


class RowSparseAdamTables(SplitTableBatchedEmbeddingBagsCodegen):
    """FBGEMM's table-batched embedding module, trained by row-sparse Adam when its optimizer is Adam and its
    tables are on CPU (otherwise exactly FBGEMM's class).

    The CPU Adam form is built as FBGEMM's SGD module (its weights, forward, bounds checks and variable-batch
    handling), with the Adam state in buffers of its own. In training the lookup runs without FBGEMM's
    autograd and an autograd node of ours takes the gradient of the output: per index, the gradient of its
    bag (times its per-sample weight) or, unpooled, of its row; per table, summed per distinct row; then
    :func:`row_sparse_adam_` updates those rows.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        specs = kwargs["embedding_specs"] if "embedding_specs" in kwargs else args[0]
        kernel = UpdateKernel(kwargs.pop(KERNEL_PARAM, UpdateKernel.AUTO.value))
        adam_on_cpu = (kwargs.get("optimizer") == EmbOptimType.ADAM
                       and all(len(s) > 3 and s[3] == ComputeDevice.CPU for s in specs))
        if adam_on_cpu:
            # Per-row bias correction is the only semantics implemented (and what the CUDA path asks for).
            kwargs.pop("extra_optimizer_config", None)
            kwargs["optimizer"] = EmbOptimType.EXACT_SGD
        super().__init__(*args, **kwargs)
        self.row_sparse_adam = adam_on_cpu
        self.update_kernel = kernel
        if not adam_on_cpu:
            return
        # our own state layout: tables back to back (FBGEMM's weights_offsets are per feature, not per table)
        self._row_starts = list(itertools.accumulate([0] + [spec[0] for spec in self.embedding_specs]))
        self._value_starts = list(itertools.accumulate([0] + [spec[0] * spec[1] for spec in self.embedding_specs]))
        self.register_buffer("adam_exp_avg", torch.zeros(self._value_starts[-1], dtype=torch.float32))
        self.register_buffer("adam_exp_avg_sq", torch.zeros(self._value_starts[-1], dtype=torch.float32))
        self.register_buffer("adam_row_counter", torch.zeros(self._row_starts[-1], dtype=torch.float32))

    # -- optimizer state, as FBGEMM reports its Adam state (row_counter: per-row bias correction) ------------

    def _table_states(self, t: int) -> List[torch.Tensor]:
        rows, dim = self.embedding_specs[t][0], self.embedding_specs[t][1]
        values = slice(self._value_starts[t], self._value_starts[t + 1])
        return [self.adam_exp_avg[values].view(rows, dim), self.adam_exp_avg_sq[values].view(rows, dim),
                self.adam_row_counter[self._row_starts[t]:self._row_starts[t + 1]]]

    @torch.jit.ignore
    def split_optimizer_states(self, *args: Any, **kwargs: Any) -> List[List[torch.Tensor]]:
        if not self.row_sparse_adam:
            return super().split_optimizer_states(*args, **kwargs)
        return [self._table_states(t) for t in range(len(self.embedding_specs))]

    @torch.jit.export
    def get_optimizer_state(self, *args: Any, **kwargs: Any) -> List[dict]:
        if not self.row_sparse_adam:
            return super().get_optimizer_state(*args, **kwargs)
        return [dict(zip(("exp_avg", "exp_avg_sq", "row_counter"), states))
                for states in self.split_optimizer_states()]

    # -- forward / backward ---------------------------------------------------------------------------------

    def forward(self, indices: torch.Tensor, offsets: torch.Tensor, per_sample_weights: Optional[torch.Tensor] = None,
                feature_requires_grad: Optional[torch.Tensor] = None,
                batch_size_per_feature_per_rank: Optional[List[List[int]]] = None, **kwargs: Any) -> torch.Tensor:
        if not self.row_sparse_adam:
            return super().forward(indices, offsets, per_sample_weights, feature_requires_grad,
                                   batch_size_per_feature_per_rank, **kwargs)
        with torch.no_grad():
            output = super().forward(indices, offsets, per_sample_weights, feature_requires_grad,
                                     batch_size_per_feature_per_rank, **kwargs)
        if not torch.is_grad_enabled():
            return output
        # FBGEMM's forward stored the indices and offsets it used (cast to int64; bounds-checked with
        # sharding.bounds_check)
        return _LookupWithAdam.apply(self.placeholder_autograd_tensor, output, self, self._indices, self._offsets,
                                     per_sample_weights, batch_size_per_feature_per_rank)

    def index_gradients(self, grad_output: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor,
                        per_sample_weights: Optional[torch.Tensor],
                        batch_size_per_feature_per_rank: Optional[List[List[int]]]) -> Iterator[tuple]:
        """Per table ``t``: ``(t, ids [n], grads [n, D_t])``, the gradient reaching each of its looked-up ids.

        ``grad_output`` is the gradient of the lookup's output: ``[L, D]`` unpooled (row j is index j's),
        pooled ``[B, sum of feature dims]`` or, with variable batch sizes per feature and rank, FBGEMM's flat
        layout (rank-major blocks of ``[B_{f,r}, D_f]``).
        """
        num_features = len(self.feature_table_map)
        dims = self.feature_dims.tolist()
        grad = grad_output.float()
        per_table: dict = {}
        if self.pooling_mode == PoolingMode.NONE:
            # one output row per index, features in order
            bags_per_feature = (offsets.numel() - 1) // num_features
            for f in range(num_features):
                lo = int(offsets[f * bags_per_feature])
                hi = int(offsets[(f + 1) * bags_per_feature])
                per_table.setdefault(self.feature_table_map[f], []).append((indices[lo:hi], grad[lo:hi, :dims[f]]))
        else:
            if self.pooling_mode != PoolingMode.SUM:
                raise NotImplementedError("row-sparse Adam on CPU supports SUM pooling and unpooled lookups")
            flat = grad.reshape(-1)
            for f, (first_bag, bag_starts) in enumerate(self._bag_layout(offsets, batch_size_per_feature_per_rank)):
                count = bag_starts.numel()
                lo, hi = int(offsets[first_bag]), int(offsets[first_bag + count])
                lengths = offsets[first_bag + 1:first_bag + count + 1] - offsets[first_bag:first_bag + count]
                starts = torch.repeat_interleave(bag_starts, lengths, output_size=hi - lo)
                g = flat[starts.unsqueeze(1) + torch.arange(dims[f])]
                if per_sample_weights is not None:
                    g = g * per_sample_weights[lo:hi].float().unsqueeze(1)
                per_table.setdefault(self.feature_table_map[f], []).append((indices[lo:hi], g))
        for t, parts in per_table.items():
            yield t, torch.cat([ids for ids, _ in parts]), torch.cat([g for _, g in parts])

    def _bag_layout(self, offsets: torch.Tensor, batch_size_per_feature_per_rank: Optional[List[List[int]]]
                    ) -> List[tuple]:
        """Per feature: (its first bag in ``offsets``, ``[bags]`` start of each bag's vector in the flat
        pooled output)."""
        num_features = len(self.feature_table_map)
        dims = self.feature_dims.tolist()
        if batch_size_per_feature_per_rank is None:
            batch = (offsets.numel() - 1) // num_features
            column = list(itertools.accumulate([0] + dims))
            return [(f * batch, torch.arange(batch) * column[-1] + column[f]) for f in range(num_features)]
        meta = generate_vbe_metadata(offsets, batch_size_per_feature_per_rank, self.pooling_mode,
                                     self.feature_dims.cpu(), torch.device("cpu"))
        out_offsets = meta.output_offsets_feature_rank.tolist()  # [R * F + 1], rank-major
        layout, first = [], 0
        for f, per_rank in enumerate(batch_size_per_feature_per_rank):
            starts = [torch.arange(b) * dims[f] + out_offsets[r * num_features + f] for r, b in enumerate(per_rank)]
            layout.append((first, torch.cat(starts)))
            first += sum(per_rank)
        return layout

    def adam_step(self, grad_output: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor,
                  per_sample_weights: Optional[torch.Tensor],
                  batch_size_per_feature_per_rank: Optional[List[List[int]]]) -> None:
        """The optimizer step of one backward: sums each table's gradients per distinct row and updates them."""
        lr = self.get_learning_rate()
        args = self.optimizer_args
        for t, ids, grads in self.index_gradients(grad_output, indices, offsets, per_sample_weights,
                                                  batch_size_per_feature_per_rank):
            rows, inverse = torch.unique(ids, return_inverse=True)
            summed = torch.zeros(rows.numel(), grads.size(1)).index_add_(0, inverse, grads)
            weights = self.split_embedding_weights()[t]
            exp_avg, exp_avg_sq, row_counter = self._table_states(t)
            row_sparse_adam_(weights, exp_avg, exp_avg_sq, row_counter, rows, summed, lr, args.beta1, args.beta2,
                             args.eps, self.update_kernel)


class _LookupWithAdam(torch.autograd.Function):
    """Identity on the lookup's output whose backward is the tables' Adam step (no gradient flows on)."""

    @staticmethod
    def forward(ctx: Any, placeholder: torch.Tensor, output: torch.Tensor, module: RowSparseAdamTables,
                indices: torch.Tensor, offsets: torch.Tensor, per_sample_weights: Optional[torch.Tensor],
                batch_size_per_feature_per_rank: Optional[List[List[int]]]) -> torch.Tensor:
        ctx.module = module
        ctx.batch_sizes = batch_size_per_feature_per_rank
        ctx.save_for_backward(indices, offsets, per_sample_weights)
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> Sequence[Optional[torch.Tensor]]:
        indices, offsets, per_sample_weights = ctx.saved_tensors
        ctx.module.adam_step(grad_output, indices, offsets, per_sample_weights, ctx.batch_sizes)
        return (None,) * 7


@contextlib.contextmanager
def cpu_row_sparse_adam() -> Iterator[None]:
    """While active, TorchRec's fused kernels build :class:`RowSparseAdamTables` (use it around the
    construction of ``DistributedModelParallel``; the modules built keep working after it ends)."""
    original = batched_embedding_kernel.SplitTableBatchedEmbeddingBagsCodegen
    batched_embedding_kernel.SplitTableBatchedEmbeddingBagsCodegen = RowSparseAdamTables
    try:
        yield
    finally:
        batched_embedding_kernel.SplitTableBatchedEmbeddingBagsCodegen = original
