"""GSU (general search unit) and ESU (exact search unit, TIN style) of docs/design.md §4.

These modules hold no sharded tables, so TorchRec's train pipelines treat them as leaves when they
fx-trace the model: their data-dependent code (top-K, jagged gathers) is never symbolically traced.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from dare_rec.data import schema
from dare_rec.modules.embeddings import SequenceEmbeddings
from dare_rec.modules.variants import ModelSpec
from dare_rec.ops import (GsuOutput, Kernel, gsu_topk, jagged_gather, jagged_layout, jagged_topk, jagged_weighted_sum,
                          row_topk)


def merge_parts(semantic: torch.Tensor, position: Optional[torch.Tensor], side: Optional[torch.Tensor],
                add: bool) -> torch.Tensor:
    """One vector (or weighted sum of vectors) from its blocks ``[..., w]``: the semantic block, the position
    block and the side-field block (each optional but the first). ``temporal_merge concat``: the blocks side by
    side, ``[semantic; position; side]``; ``add``: ``[semantic + side; position]`` (the side block is as wide as
    the semantic one, and a weighted sum of e + x is the sum of the parts' weighted sums)."""
    if side is not None and add:
        semantic, side = semantic + side, None
    blocks = [block for block in (semantic, position, side) if block is not None]
    return blocks[0] if len(blocks) == 1 else torch.cat(blocks, dim=-1)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim restricted to ``mask``; rows with nothing valid give all-zero weights.

    Args:
        scores: ``[B, K]``.
        mask: ``[B, K]`` bool.
    """
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=-1) * mask.to(scores.dtype)


class DinAttention(nn.Module):
    """DIN's attention score: ``MLP([q, k, q - k, q * k]) / width`` per behavior (36 hidden, PReLU), as the
    reference code's ``learnable`` attention. Cost O(L * width * 36), so it is the expensive search.

    Args:
        width: width of a query / key vector (``[item; cate; ...]``, plus the position vector when used).
    """

    def __init__(self, width: int, device: torch.device) -> None:
        super().__init__()
        self.width = width
        self.mlp = nn.Sequential(nn.Linear(4 * width, 36, device=device), nn.PReLU(device=device),
                                 nn.Linear(36, 1, device=device))

    def forward(self, keys: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """``keys``, ``queries``: ``[L, width]`` (each behavior next to its own target) -> scores ``[L]``."""
        pairs = torch.cat([queries, keys, queries - keys, queries * keys], dim=1)
        return self.mlp(pairs).squeeze(-1) / self.width


class GeneralSearchUnit(nn.Module):
    """Scores every behavior against its target in attention space and selects K of them.

    ``dot`` score: ``s_i = <e_i^A, v_t^A> / sqrt(D_att) + <p_i^A, p_0^A> / sqrt(d_pos_att)
    + sum_f <x_{f,i}^A, x_{f,0}^A> / sqrt(d_pos_att)`` with D_att the width of the [item; cate; ...] attention
    vector (n * d_att, n the semantic fields: item, cate and the seller / brand in use) and x_f the dense side
    fields' vectors (row 0: the target's), each term scaled like the position term (docs/side-info.md §2.0).
    ``din_mlp``: :class:`DinAttention` over the full attention vectors (positions and side fields concatenated).
    ``soft`` search keeps the top-K scores of the valid behaviors. Under ``temporal_merge add`` the keys and
    queries already carry their side rows (:class:`SequenceEmbeddings`), so the score is ``<ẽ_i^A, ṽ_t^A> /
    sqrt(D_att)`` plus the position term (DIN: its MLP over ẽ and ṽ with the positions concatenated), with no
    side term. With O target objectives (``model.position_objectives``, §2.4; one head only) p_i^A and p_0^A come
    from the slice of the sample's objective.

    ``hard`` search (docs/side-info.md §2.3) ranks the behaviors by a code of the levels (``hard_levels``, e.g.
    category then brand) whose ids equal the target's, ``code_i = sum_l m_{l,i} 2^(H-1-l)`` (the first level
    decides first: with [cate, brand], category and brand 3 > category only 2 > brand only 1 > none 0), the most
    recent first within a code, and keeps the first K that match some level. Fewer than K matched: fill
    ``recent`` takes the most recent others (with [cate], today's hard search), ``soft`` the others of highest
    score. The softmax weights come from the scores in every case.

    With ``heads`` (DI-TIN, docs/side-info.md §2.5) each head h scores with its fields S_h only, ``s_i^(h) =
    sum_{f in S_h semantic} <a_{f,i}, a_{f,t}> / sqrt(|S_h semantic| * d) + sum_{g in S_h dense} beta_g(i)``
    (beta: the position term, each side field's term), and keeps its own top K; equal scores select the more
    recent behavior first (:func:`recent_first_rank`). The H searches run as one: the keys are repeated H times
    and the heads stacked in the batch dimension of one :func:`gsu_topk` call.

    Args:
        spec: the model axes (score, search, positions).
        att_width: D_att.
        att_position_dim: d_pos_att.
        top_k: K.
        max_len: N.
        kernel: implementation of the custom ops.
        device: parameter device (DIN's MLP).
        num_side_fields: S, the side fields in use (their attention vectors are d_pos_att wide under concat).
        hard_levels: H levels of hard search, among ``cate``, ``brand``, ``seller`` (``model.hard_levels``).
        hard_fill: ``recent`` or ``soft`` (``model.hard_fill``).
        temporal_merge: ``concat`` or ``add`` (``model.temporal_merge``; DIN's MLP width).
        heads: the attention heads' field lists (``model.attention_heads``; None: one head of every field).
        semantic_fields: the fields whose attention vectors make up ``e^A``, in column order, each
            ``att_width / len(semantic_fields)`` wide (``ModelConfig.semantic_fields``; with ``heads``).
        dense_fields: ``pos`` (with positions) then the side fields, in ``side_ids`` column order (with ``heads``).
    """

    def __init__(self, spec: ModelSpec, att_width: int, att_position_dim: int, top_k: int, max_len: int,
                 kernel: Kernel, device: torch.device, num_side_fields: int = 0,
                 hard_levels: Sequence[str] = ("cate",), hard_fill: str = "recent",
                 temporal_merge: str = "concat",
                 heads: Optional[Sequence[Sequence[str]]] = None, semantic_fields: Sequence[str] = ("item", "cate"),
                 dense_fields: Sequence[str] = ()) -> None:
        super().__init__()
        self.scale = 1.0 / math.sqrt(att_width)
        self.position_scale = 1.0 / math.sqrt(att_position_dim)
        self.hard = spec.search == "hard"
        self.hard_levels = tuple(hard_levels)
        self.soft_fill = hard_fill == "soft"
        self.top_k = top_k
        self.max_len = max_len
        self.kernel = kernel
        # DIN's MLP reads the key with its dense vectors concatenated, or (add) the key its side rows were added to
        # and its position vector
        din_width = att_width + (att_position_dim if spec.positions else 0) + (
            0 if temporal_merge == "add" else num_side_fields * att_position_dim)
        self.din = DinAttention(din_width, device) if spec.score == "din_mlp" else None
        self.num_heads = len(heads) if heads is not None else 1
        self.by_heads = heads is not None  # model.attention_heads set (possibly one head)
        if self.by_heads:
            # Head h's query weights [H, D_att] (1 / sqrt(|S_h semantic| * d) on its semantic fields' columns, 0
            # elsewhere: a head without semantic fields scores 0 there) and its dense fields [H, F], 1 or 0.
            # Buffers, not parameters: fixed by the config, and not saved (they are rebuilt from it).
            field_dim = att_width // len(semantic_fields)
            query = torch.zeros(len(heads), att_width)
            dense = torch.zeros(len(heads), len(dense_fields))
            for h, head in enumerate(heads):
                semantic = [semantic_fields.index(f) for f in head if f in semantic_fields]
                for f in semantic:
                    query[h, f * field_dim:(f + 1) * field_dim] = 1.0 / math.sqrt(len(semantic) * field_dim)
                for f in head:
                    if f in dense_fields:
                        dense[h, list(dense_fields).index(f)] = 1.0
            self.register_buffer("head_query", query.to(device), persistent=False)
            self.register_buffer("head_dense", dense.to(device), persistent=False)

    def position_bias_table(self, emb: SequenceEmbeddings) -> torch.Tensor:
        """``[N + 1]`` the dot score's position term per target-relative position, ``<p_i^A, p_0^A> /
        sqrt(d_pos_att)`` (zeros without positions); with O objectives ``[O, N + 1]``, each slice's terms
        (its rows against its own row 0)."""
        if emb.att_positions is None:
            return emb.att_hist.new_zeros(self.max_len + 1)
        if emb.objectives is None:
            return (emb.att_positions @ emb.att_target_position) * self.position_scale
        return (emb.att_positions @ emb.att_target_position.unsqueeze(-1)).squeeze(-1) * self.position_scale

    def position_bias(self, emb: SequenceEmbeddings) -> torch.Tensor:
        """The position term :func:`gsu_topk` adds: ``[N + 1]`` shared by every sample, or with O objectives
        ``[B, N + 1]``, each sample's row of :meth:`position_bias_table` (a gather on the device)."""
        table = self.position_bias_table(emb)
        return table if emb.objectives is None else table[emb.objectives]

    def side_bias(self, emb: SequenceEmbeddings) -> Optional[torch.Tensor]:
        """``[L]`` the dot score's side-field term of every behavior, ``sum_f <x_{f,i}^A, x_{f,0}^A> /
        sqrt(d_pos_att)`` (None without side fields, or when they were added to the keys): each table row is scored
        against its field's target row once, ``[R, S]``, and every behavior reads its S entries."""
        if emb.att_side is None:
            return None
        return self.side_terms(emb).sum(1)

    def side_terms(self, emb: SequenceEmbeddings) -> torch.Tensor:
        """``[L, S]`` each side field's term of every behavior (see :meth:`side_bias`); side fields only."""
        per_row = (emb.att_side @ emb.att_target_side.t()) * self.position_scale
        fields = torch.arange(emb.side_ids.size(1), device=emb.side_ids.device)
        return per_row[emb.side_ids, fields]

    def head_bias(self, emb: SequenceEmbeddings, positions: torch.Tensor) -> torch.Tensor:
        """``[H, n]`` each head's dense terms of n behaviors at target-relative ``positions [n]`` (jagged like
        ``emb.side_ids``): the sum of the position term and the side fields' terms its fields name (heads only)."""
        terms = ([self.position_bias(emb)[positions]] if emb.att_positions is not None else []) \
            + (list(self.side_terms(emb).unbind(1)) if emb.side_ids is not None else [])
        bias = positions.new_zeros(self.num_heads, positions.numel(), dtype=self.head_query.dtype)
        # term by term: every behavior's sum is formed in the same order, so equal terms give exactly equal scores
        for field, term in enumerate(terms):
            bias = bias + self.head_dense[:, field:field + 1] * term.unsqueeze(0)
        return bias

    def forward(self, emb: SequenceEmbeddings, hist_levels: Optional[torch.Tensor] = None,
                target_levels: Optional[torch.Tensor] = None, query: Optional[torch.Tensor] = None) -> GsuOutput:
        """
        Args:
            emb: the batch's role vectors (attention keys/queries and position vectors are read).
            hist_levels: ``[L, H]`` the behaviors' ids of each hard level (``hard_levels`` order); target_levels
                ``[B, H]`` the targets' (hard search only).
            query: ``[B, D_att]`` a query of its own instead of the targets' ``emb.att_target`` (stacked TIN's
                layer 2, :class:`StackedQuery`): the soft dot search with it, its position and side terms those of
                the targets, whatever ``spec.search`` is (hard search's levels rank layer 1 only).
        """
        if query is not None:
            return gsu_topk(emb.att_hist, emb.offsets, query, self.position_bias(emb), self.top_k, self.max_len,
                            self.scale, self.kernel, key_bias=self.side_bias(emb))
        if self.by_heads:
            return self.search_heads(emb)
        if self.din is None:
            out = gsu_topk(emb.att_hist, emb.offsets, emb.att_target, self.position_bias(emb), self.top_k,
                           self.max_len, self.scale, self.kernel, key_bias=self.side_bias(emb))
        else:
            rows, slots, lengths = jagged_layout(emb.offsets, emb.att_hist.size(0))
            keys, queries = emb.att_hist, emb.att_target[rows]
            if emb.att_positions is not None:
                objectives = None if emb.objectives is None else emb.objectives[rows]
                keys = torch.cat([keys, position_vectors(emb.att_positions, lengths[rows] - slots, objectives)], dim=1)
                queries = torch.cat([queries, target_positions(emb.att_target_position, objectives, keys.size(0))],
                                    dim=1)
            if emb.att_side is not None:
                keys = torch.cat([keys, emb.att_side[emb.side_ids].flatten(1)], dim=1)
                queries = torch.cat([queries, emb.att_target_side.reshape(1, -1).expand(keys.size(0), -1)], dim=1)
            out = jagged_topk(self.din(keys, queries), emb.offsets, self.top_k, self.max_len, self.kernel)
        if not self.hard:
            return out
        # Hard search: rank by level code, the most recent first within a code (slot j + 1 grows with
        # recency); the softmax weights still come from the scores.
        rows, slots, _ = jagged_layout(emb.offsets, hist_levels.size(0))
        selection_key = self.hard_selection_key(self.level_code(hist_levels, target_levels[rows]), slots)
        selected = jagged_topk(selection_key, emb.offsets, self.top_k, self.max_len, self.kernel)
        if self.soft_fill:
            return self.fill_from_soft(selected, out)
        return GsuOutput(out.scores, selected.top_indices, selected.top_mask)

    def search_heads(self, emb: SequenceEmbeddings) -> GsuOutput:
        """The H heads' searches of the batch (``heads`` only).

        Returns:
            :class:`GsuOutput` with ``scores [B, H, N]`` (``[B, N]`` for one head) and ``top_indices`` /
            ``top_mask`` ``[B, H * K']``, head h's K' selected slots at ``h * K' ..``, in descending score order.
        """
        heads, total, num_rows = self.num_heads, emb.att_hist.size(0), emb.att_target.size(0)
        rows, slots, lengths = jagged_layout(emb.offsets, total)
        bias = self.head_bias(emb, lengths[rows] - slots)
        # head-major rows h * B + b: head h's query is the target's weighted by its fields, its keys the batch's
        queries = (self.head_query.unsqueeze(1) * emb.att_target.unsqueeze(0)).flatten(0, 1).to(emb.att_target.dtype)
        starts = emb.offsets[:-1] + torch.arange(heads, device=emb.offsets.device).unsqueeze(1) * total
        offsets = torch.cat([starts.flatten(), starts.new_full((1,), heads * total)])
        # The op's own top-K (k = 1, a max) is not used: its order among equal scores is the kernel's.
        out = gsu_topk(emb.att_hist.repeat(heads, 1), offsets, queries, emb.att_hist.new_zeros(self.max_len + 1),
                       1, self.max_len, 1.0, self.kernel, key_bias=bias.flatten())
        scores = out.scores.view(heads, num_rows, self.max_len)
        rank = recent_first_rank(scores, torch.arange(self.max_len, device=scores.device))
        top = rank.topk(min(self.top_k, self.max_len), dim=2).indices  # [H, B, K']
        mask = top < lengths.view(1, -1, 1)
        by_sample = scores[0] if heads == 1 else scores.transpose(0, 1).contiguous()
        return GsuOutput(by_sample, top.transpose(0, 1).flatten(1), mask.transpose(0, 1).flatten(1))

    def level_code(self, hist_levels: torch.Tensor, target_levels: torch.Tensor) -> torch.Tensor:
        """The hard levels' match code ``sum_l m_{l,i} 2^(H-1-l)`` (int64, the broadcast shape of the inputs
        without their last dim): ``hist_levels [..., H]`` against ``target_levels [..., H]``. A target with an
        unknown brand or seller (id 1) matches nothing at that level: an empty field is no shared brand."""
        code = torch.zeros_like(hist_levels[..., 0] == target_levels[..., 0], dtype=torch.long)
        for level, name in enumerate(self.hard_levels):
            match = hist_levels[..., level] == target_levels[..., level]
            if name != "cate":
                match = match & (target_levels[..., level] != schema.UNKNOWN_SIDE_ID)
            code = code * 2 + match.long()
        return code

    def hard_selection_key(self, code: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Hard search's ranking key (float32, any shape): a higher level code first, the most recent first
        within a code; a behavior matches some level iff its key exceeds N + 1. ``code`` int (see
        :meth:`level_code`), ``slots`` int (0 = oldest). Exact in float32: below 8 (N + 1) < 2^24."""
        return code.to(torch.float32) * (self.max_len + 1) + slots.to(torch.float32) + 1

    def fill_from_soft(self, hard: GsuOutput, soft: GsuOutput) -> GsuOutput:
        """Fill ``soft``: the matched behaviors of the hard selection, then the unmatched ones of highest score.

        The soft top-K holds the top ``K' - matched`` unmatched behaviors (each has fewer than that many unmatched
        and at most ``matched`` matched ones above it), so no second top-K over the history is needed: its
        unmatched entries are moved to the front in score order, and lane k >= matched takes entry k - matched.

        Args:
            hard: :meth:`hard_selection_key`'s top-K: ``scores [B, N]`` the keys, ``top_indices`` / ``top_mask``
                ``[B, K']``, the matched behaviors first.
            soft: the score's top-K (``scores [B, N]``, ``top_indices [B, K']`` in score order).

        Returns:
            the scores of ``soft``, the selected slots ``[B, K']`` and ``hard``'s mask (``min(K', length)``).
        """
        matched_key = self.max_len + 1
        count = ((hard.scores.gather(1, hard.top_indices) > matched_key) & hard.top_mask).sum(1, keepdim=True)
        soft_matched = hard.scores.gather(1, soft.top_indices) > matched_key  # padding's key is the lowest float
        # a stable sort keeps the score order among the unmatched; matched and padding entries go last
        order = torch.sort((soft_matched | ~soft.top_mask).to(torch.int8), dim=1, stable=True).indices
        unmatched = soft.top_indices.gather(1, order)
        lanes = torch.arange(hard.top_indices.size(1), device=count.device).unsqueeze(0)
        filled = unmatched.gather(1, (lanes - count).clamp(min=0))
        return GsuOutput(soft.scores, torch.where(lanes < count, hard.top_indices, filled), hard.top_mask)

    def search_one_history(self, emb: SequenceEmbeddings, hist_levels: Optional[torch.Tensor],
                           target_levels: Optional[torch.Tensor], chunk: int = 16_384,
                           soft: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """The search of C candidates against one shared history (candidate scoring at serving time).

        ``emb`` holds one history's keys ``att_hist [n, D]`` and the C candidates' queries ``att_target
        [C, D]``. Scores are those of :meth:`forward` for C samples that each carry the whole history, and the
        selection is the same (soft: the top K scores; hard: the candidate's level code first, the most recent
        first, then the fill). The history is walked in chunks of ``chunk`` slots, each one ``[C, D + 1] @ [D + 1,
        chunk]`` product (the scale folded into the queries, the position and side terms into an extra key column)
        followed by a top-K merged into the running one (two with the ``soft`` fill: by hard key, and by score
        among the unmatched), so memory is ``[C, chunk]`` for any n. The default is one chunk
        for every supported history: on CPU, torch's top-K over 1,024-slot chunks took 3.5x the time of one
        top-K over 10,000 slots (C = 500), and a ``[500, 10,000]`` block is 20 MB. ``dot`` score only: DIN's
        MLP over C x n pairs is the expensive search this path exists to avoid.

        Args:
            hist_levels: ``[n, H]`` the behaviors' ids of each hard level, oldest first; target_levels ``[C, H]``
                the candidates' (hard search only).
            soft: the soft search whatever ``spec.search`` is (stacked TIN's layer 2, whose queries
                ``emb.att_target`` then are; the levels are not read).

        Returns:
            scores ``[C, K']`` of the selected behaviors and their slots ``[C, K']``, K' = min(K, n).
        """
        if self.din is not None:
            raise ValueError("candidate scoring needs the dot score; the din_mlp score (variant din) has none")
        if self.by_heads:
            return self._heads_of_one_history(emb, chunk)
        hard = self.hard and not soft
        length, num = emb.att_hist.size(0), emb.att_target.size(0)
        device = emb.att_hist.device
        positions = torch.arange(length, 0, -1, device=device)  # slot j sits at position n - j
        bias = self.position_bias_table(emb)
        if emb.objectives is not None:  # every candidate has the same objective (score_candidates): one row
            bias = bias[emb.objectives[0]]
        bias = bias[positions]
        side_bias = self.side_bias(emb)
        if side_bias is not None:
            bias = bias + side_bias
        keys = torch.cat([emb.att_hist, bias.unsqueeze(1)], dim=1)
        queries = torch.cat([emb.att_target * self.scale, emb.att_target.new_ones(num, 1)], dim=1)
        k = min(self.top_k, length)
        best = _RunningTopK(num, k, emb.att_target)
        best_unmatched = _RunningTopK(num, k, emb.att_target)  # the soft fill's: by score among the unmatched
        for begin in range(0, length, chunk):
            end = min(begin + chunk, length)
            scores = queries @ keys[begin:end].t()
            if not hard:
                best.merge(scores, scores, begin)
                continue
            code = self.level_code(hist_levels[begin:end].unsqueeze(0), target_levels.unsqueeze(1))
            best.merge(self.hard_selection_key(code, torch.arange(begin, end, device=device)), scores, begin)
            if self.soft_fill:
                best_unmatched.merge(scores.masked_fill(code > 0, -math.inf), scores, begin)
        if not (hard and self.soft_fill):
            return best.scores, best.slots
        # as fill_from_soft: lanes below the matched count keep the hard order, the others take the unmatched
        # ones by score (there are at least K' - matched of them)
        best.sort()
        best_unmatched.sort()
        count = (best.rank > self.max_len + 1).sum(1, keepdim=True)
        lanes = torch.arange(k, device=device).unsqueeze(0)
        fill = (lanes - count).clamp(min=0)
        first = lanes < count
        return (torch.where(first, best.scores, best_unmatched.scores.gather(1, fill)),
                torch.where(first, best.slots, best_unmatched.slots.gather(1, fill)))

    def _heads_of_one_history(self, emb: SequenceEmbeddings, chunk: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`search_one_history` with ``heads``: each head's search of each candidate, as in
        :meth:`search_heads`, in one ``[H * C, D + H] @ [D + H, chunk]`` product per chunk (head h's bias in key
        column D + h, read by a one-hot query column). Returns scores and slots ``[C, H * K']``, head-major."""
        length, num, heads = emb.att_hist.size(0), emb.att_target.size(0), self.num_heads
        device = emb.att_hist.device
        bias = self.head_bias(emb, torch.arange(length, 0, -1, device=device))  # slot j sits at position n - j
        keys = torch.cat([emb.att_hist, bias.t()], dim=1)
        one_hot = torch.eye(heads, dtype=emb.att_target.dtype, device=device).unsqueeze(1).expand(heads, num, heads)
        queries = torch.cat([self.head_query.unsqueeze(1) * emb.att_target.unsqueeze(0), one_hot], dim=2)
        queries = queries.flatten(0, 1)
        k = min(self.top_k, length)
        best = _RunningTopK(heads * num, k, emb.att_target, torch.long)
        for begin in range(0, length, chunk):
            end = min(begin + chunk, length)
            scores = queries @ keys[begin:end].t()
            best.merge(recent_first_rank(scores, torch.arange(begin, end, device=device)), scores, begin)
        return (best.scores.view(heads, num, k).transpose(0, 1).flatten(1),
                best.slots.view(heads, num, k).transpose(0, 1).flatten(1))


def recent_first_rank(scores: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """int64 ranks that order ``scores`` (float, ``[..., n]``) descending and equal scores by slot, the more recent
    (higher) slot first: the order-preserving int32 image of the float32 score times 2^32, plus the slot ``[n]``.
    The heads' selection rule: a head of dense fields only gives many equal scores (one per behavior type, say),
    and torch's top-K leaves their order unspecified (it differs with the row's length, so candidate scoring
    would select differently from the batch)."""
    bits = (scores.float() + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into 0.0, which must rank equal
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # negative floats: flip the magnitude bits
    return ordered.long() * (1 << 32) + slots


class _RunningTopK:
    """The K best of a stream of ``[C, chunk]`` blocks by a rank (the score, hard search's key, or the heads'
    :func:`recent_first_rank`, of dtype ``rank_dtype``): the ranks ``[C, <= K]`` (descending), their slots and
    their scores."""

    def __init__(self, num: int, k: int, like: torch.Tensor, rank_dtype: Optional[torch.dtype] = None) -> None:
        self.k = k
        self.rank = like.new_empty(num, 0, dtype=rank_dtype)
        self.slots = torch.empty(num, 0, dtype=torch.long, device=like.device)
        self.scores = like.new_empty(num, 0)

    def merge(self, rank: torch.Tensor, scores: torch.Tensor, begin: int) -> None:
        """Merges the block of slots ``begin..begin + rank.size(1) - 1``."""
        top_rank, top = row_topk(rank, min(self.k, rank.size(1)))
        self.rank = torch.cat([self.rank, top_rank], dim=1)
        self.slots = torch.cat([self.slots, top + begin], dim=1)
        self.scores = torch.cat([self.scores, scores.gather(1, top)], dim=1)
        if self.rank.size(1) > self.k:
            self.rank, keep = self.rank.topk(self.k, dim=1)
            self.slots, self.scores = self.slots.gather(1, keep), self.scores.gather(1, keep)

    def sort(self) -> None:
        """Puts the K best in descending rank order (a merge leaves them unordered while at most K were seen)."""
        self.rank, order = self.rank.sort(dim=1, descending=True)
        self.slots, self.scores = self.slots.gather(1, order), self.scores.gather(1, order)


class TinAggregation(nn.Module):
    """What the ESU and the full-sequence aux attention share: the kernels, the layers, the heads and the merge.

    Args:
        kernel: implementation of the custom ops.
        layers: 1, or 2 for stacked TIN.
        add: ``temporal_merge add``: the side-field blocks are summed into the semantic one, not concatenated.
        heads: H, the attention heads (with two layers: 1).
    """

    def __init__(self, kernel: Kernel, layers: int = 1, add: bool = False, heads: int = 1) -> None:
        super().__init__()
        self.kernel = kernel
        self.layers = layers
        self.add = add
        self.heads = heads


class ExactSearchUnit(TinAggregation):
    """TIN-style aggregation of the selected behaviors in representation space.

    ``w = softmax(s_idx)`` over the selected K, ``h = sum_k w_k * e_k^R`` with ``e^R = [item; cate; ...; p^R;
    x_1^R; ...; x_S^R]`` (the semantic blocks, then positions and side fields when used), or under
    ``temporal_merge add`` ``e^R = [[item; cate; ...] + x_1^R + ... + x_S^R; p^R]`` (:func:`merge_parts`).
    The target-aware product ``v_t^R * h`` is formed by the over-arch input (see DareModel).
    With two layers (stacked TIN, docs/side-info.md §2.6) layer 2 aggregates the behaviors of a second search
    (``second``, its query from :class:`StackedQuery`) the same way, and the output is ``[h^(1); h^(2)]``.
    With H attention heads (DI-TIN) the selection holds each head's K' behaviors in turn, each head's weights are
    a softmax over its own K', and the output is ``[h^(1); ...; h^(H)]``, each the sum of the full vectors e^R.

    Constructor arguments: :class:`TinAggregation`'s.
    """

    def forward(self, gsu: GsuOutput, emb: SequenceEmbeddings, selected: Optional[torch.Tensor] = None,
                selected_scores: Optional[torch.Tensor] = None,
                selected_side_ids: Optional[torch.Tensor] = None, second: Optional[GsuOutput] = None,
                second_selected: Optional[torch.Tensor] = None, second_scores: Optional[torch.Tensor] = None,
                second_side_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            gsu: the search result (scores ``[B, N]``, top_indices / top_mask ``[B, K]``; scores may be None
                when ``selected_scores`` is given). With H > 1 heads: scores ``[B, H, N]``, top_indices / top_mask
                ``[B, H * K]`` (head h's K at ``h * K ..``), and so are the K-wide arguments below.
            emb: role vectors (the representation position vectors, and ``rep_hist [L, n * d_rep]`` when
                ``selected`` is not given).
            selected: ``[B, K, n * d_rep]`` representation vectors of the selected behaviors, when they were
                looked up on their own; else they are gathered from ``emb.rep_hist``.
            selected_scores: ``[B, K]`` the scores of the selected behaviors, when the search kept only those
                (candidate scoring); else gathered from ``gsu.scores``.
            selected_side_ids: ``[B, K, S]`` the side rows of the selected behaviors, when the search ran on
                one shared history (candidate scoring); else gathered from ``emb.side_ids``.
            second, second_selected, second_scores, second_side_ids: layer 2's search and the same for its
                selection (two layers only; ``second`` is required then).

        Returns:
            h ``[B, layers * H * W]``, ``W = n * d_rep (+ d_pos) (+ S * d_pos)`` (add: ``n * d_rep (+ d_pos)``): one
            block per layer or head.
        """
        h = self._layer(gsu, emb, selected, selected_scores, selected_side_ids, self.heads)
        if self.layers == 1:
            return h.reshape(h.size(0) // self.heads, self.heads * h.size(1))
        return torch.cat([h, self._layer(second, emb, second_selected, second_scores, second_side_ids, 1)], dim=1)

    def _layer(self, gsu: GsuOutput, emb: SequenceEmbeddings, selected: Optional[torch.Tensor],
               selected_scores: Optional[torch.Tensor], selected_side_ids: Optional[torch.Tensor],
               heads: int) -> torch.Tensor:
        """``[B * heads, W]`` one search's softmax-weighted sum of its selection (arguments: :meth:`forward`'s)."""
        if selected_scores is None:
            index = gsu.top_indices if heads == 1 else gsu.top_indices.view(gsu.top_indices.size(0), heads, -1)
            selected_scores = gsu.scores.gather(-1, index).flatten(1)
        # heads as rows of their own ([B * H, K, ...], a no-op view with one head): softmax and sums per head
        weights = masked_softmax(self._per_head(selected_scores, heads), self._per_head(gsu.top_mask, heads))
        if selected is None:
            selected = jagged_gather(emb.rep_hist, emb.offsets, gsu.top_indices, gsu.top_mask, self.kernel)
        selected_pos, selected_side = None, None
        if emb.rep_positions is not None:
            lengths = (emb.offsets[1:] - emb.offsets[:-1]).unsqueeze(1)
            selected_pos = position_vectors(emb.rep_positions, (lengths - gsu.top_indices).clamp(min=0),
                                            None if emb.objectives is None else emb.objectives.unsqueeze(1))
        if emb.side_ids is not None:
            if selected_side_ids is None:
                selected_side_ids = selected_rows(emb.side_ids, emb.offsets, gsu.top_indices, gsu.top_mask)
            # [B * H, K, S, d_pos]; masked: weight 0
            selected_side = self._per_head(emb.rep_side[selected_side_ids], heads)
        selected = self._per_head(selected, heads)
        selected_pos = None if selected_pos is None else self._per_head(selected_pos, heads)
        return self._aggregate(weights, selected, selected_pos, selected_side)

    @staticmethod
    def _per_head(x: torch.Tensor, heads: int) -> torch.Tensor:
        """``[B, H * K, ...]`` -> ``[B * H, K, ...]``: head h of sample b in row ``b * H + h``."""
        return x.reshape(x.size(0) * heads, x.size(1) // heads, *x.shape[2:])

    def _aggregate(self, weights: torch.Tensor, selected: torch.Tensor, selected_pos: Optional[torch.Tensor],
                   selected_side: Optional[torch.Tensor]) -> torch.Tensor:
        """``[B, W]`` the weighted sum of the K behaviors' vectors: ``weights [B, K]``, ``selected [B, K,
        n * d_rep]``, ``selected_pos [B, K, d_pos]``, ``selected_side [B, K, S, d_side]`` (the last two optional;
        d_side is d_pos, or n * d_rep under add)."""
        semantic = (weights.unsqueeze(-1) * selected).sum(1)
        position = None if selected_pos is None else (weights.unsqueeze(-1) * selected_pos).sum(1)
        side = None
        if selected_side is not None:
            side = (weights.unsqueeze(-1).unsqueeze(-1) * selected_side).sum(1)  # [B, S, d_side]
            side = side.sum(1) if self.add else side.flatten(1)
        return merge_parts(semantic, position, side, self.add)


class FullSequenceAttention(TinAggregation):
    """The ESU aggregation with a softmax over *all* valid behaviors instead of the top K (the aux head's
    input, as in the reference code); costs O(N * d_rep) and so only runs in training. With two layers
    (stacked TIN) layer 2 is a softmax over all of them too, of the scores of layer 2's search.

    With H attention heads each head's softmax weights every behavior in turn (H weighted sums of the history).

    Constructor arguments: :class:`TinAggregation`'s.
    """

    def forward(self, scores: torch.Tensor, emb: SequenceEmbeddings,
                second_scores: Optional[torch.Tensor] = None) -> torch.Tensor:
        """
        Args:
            scores: ``[B, N]`` GSU scores of every slot (``[B, H, N]`` with H > 1 heads).
            emb: role vectors (representation side).
            second_scores: ``[B, N]`` layer 2's search scores of every slot (two layers only).

        Returns:
            ``[B, layers * H * W]``, ``W = n * d_rep (+ d_pos) (+ S * d_pos)`` (add: ``n * d_rep (+ d_pos)``): one
            block per layer or head.
        """
        lengths = (emb.offsets[1:] - emb.offsets[:-1]).unsqueeze(1)
        slots = torch.arange(scores.size(-1), device=scores.device).unsqueeze(0)
        valid = slots < lengths
        if self.heads > 1:
            return torch.cat([self._aggregate(masked_softmax(head, valid), lengths, emb) for head in scores.unbind(1)],
                             dim=1)
        h = self._aggregate(masked_softmax(scores, valid), lengths, emb)
        if self.layers == 1:
            return h
        return torch.cat([h, self._aggregate(masked_softmax(second_scores, valid), lengths, emb)], dim=1)

    def _aggregate(self, weights: torch.Tensor, lengths: torch.Tensor, emb: SequenceEmbeddings) -> torch.Tensor:
        """``[B, W]`` the weighted sum of every behavior's vector, ``weights [B, N]``, ``lengths [B, 1]``."""
        semantic = jagged_weighted_sum(emb.rep_hist, emb.offsets, weights, self.kernel)
        position = self._position_sum(weights, lengths, emb) if emb.rep_positions is not None else None
        side = None
        if emb.side_ids is not None:
            # every behavior's [S * d_pos] side vector (add: the [n * d_rep] sum of its S rows): no larger than
            # rep_hist [L, n * d_rep], which this head reads
            rows = emb.rep_side[emb.side_ids]
            side = jagged_weighted_sum(rows.sum(1) if self.add else rows.flatten(1), emb.offsets, weights,
                                       self.kernel)
        return merge_parts(semantic, position, side, self.add)

    @staticmethod
    def _position_sum(weights: torch.Tensor, lengths: torch.Tensor, emb: SequenceEmbeddings) -> torch.Tensor:
        """``[B, d_pos]`` the weighted sum of the behaviors' representation position vectors."""
        # Slot j of a history of n behaviors sits at position n - j, so the weighted sum of position vectors
        # is (weight of each position) @ table: a [B, P] gather of weights, not a [B, N, d_pos] gather of rows.
        positions = torch.arange(emb.rep_positions.size(-2), device=weights.device).unsqueeze(0)
        source_slots = (lengths - positions).clamp(0, weights.size(1) - 1)
        occupied = (positions >= 1) & (positions <= lengths)
        position_weights = weights.gather(1, source_slots) * occupied
        if emb.objectives is None:
            return position_weights @ emb.rep_positions
        # with O objectives each sample weighs its own slice: its weights in that slice's block of [B, O * P]
        # (a comparison, not one_hot, which checks the ids' range on the host)
        slices = (emb.objectives.unsqueeze(1) == torch.arange(emb.rep_positions.size(0), device=weights.device))
        slices = slices.to(position_weights.dtype)
        return (slices.unsqueeze(2) * position_weights.unsqueeze(1)).flatten(1) @ emb.rep_positions.flatten(0, 1)


class StratifiedBehaviorSample(nn.Module):
    """Chooses the behaviors the bounded aux head reads: every slot of a history of at most ``num`` behaviors,
    else one slot from each of ``num`` equal strata of it, ``floor((i + u) * n / num)`` for i < num. The offset
    u in [0, 1) is a hash of the sample's target id and history length: deterministic (a resumed run draws the
    same sample, no RNG state to checkpoint), different across samples, and spread over the whole history, so
    old behaviors are read as often as recent ones.

    Args:
        num: M, behaviors per sample.
    """

    _HASH_BITS = 20

    def __init__(self, num: int) -> None:
        super().__init__()
        self.num = num

    def forward(self, scores: torch.Tensor, offsets: torch.Tensor, target_ids: torch.Tensor) -> GsuOutput:
        """
        Args:
            scores: ``[B, N]`` the GSU's scores (``[B, H, N]`` with H > 1 attention heads; passed through: the aux
                head's softmax reads them).
            offsets: ``[B + 1]`` history row offsets.
            target_ids: ``[B]`` int target ids (the hash's key).

        Returns:
            :class:`GsuOutput` with ``top_indices`` the sampled slots ``[B, M]`` (ascending within a row) and
            ``top_mask`` ``[B, M]`` (False past a short history's length).
        """
        lengths = (offsets[1:] - offsets[:-1]).unsqueeze(1)
        lanes = torch.arange(self.num, device=offsets.device).unsqueeze(0)
        # Knuth's multiplicative hash of (target id, length), taken mod 2^20: u in [0, 1).
        key = target_ids.long().unsqueeze(1) * 2654435761 + lengths * 40503
        offset = torch.remainder(key, 1 << self._HASH_BITS).double() / (1 << self._HASH_BITS)
        strata = ((lanes + offset) * lengths.double() / self.num).long()
        long_rows = lengths > self.num
        slots = torch.where(long_rows, strata, lanes)
        return GsuOutput(scores, slots, lanes < lengths)


class StackedQuery(nn.Module):
    """Stacked TIN's layer-2 query (docs/side-info.md §2.6): the target's attention vector moved by what layer 1
    attended to, ``q^(2) = W_t v_t^A + W_c c^(1)`` with ``c^(1) = sum_k w_k^(1) e_k^A`` over layer 1's K selected
    behaviors (``w^(1)`` its softmax weights). Layer 2 searches the whole history with it
    (:meth:`GeneralSearchUnit.forward`'s ``query``), so it may select behaviors layer 1 did not. ``W_t``, ``W_c``:
    ``D_att x D_att``, dense weights initialised like the others. Under ``temporal_merge add`` v_t^A and e^A are
    ṽ^A and ẽ^A, the vectors layer 1 scored.

    Args:
        att_width: D_att.
        kernel: implementation of the custom ops (the gather of the selected keys).
        device: parameter device.
    """

    def __init__(self, att_width: int, kernel: Kernel, device: torch.device) -> None:
        super().__init__()
        self.target = nn.Linear(att_width, att_width, bias=False, device=device)
        self.context = nn.Linear(att_width, att_width, bias=False, device=device)
        self.kernel = kernel

    def forward(self, gsu: GsuOutput, emb: SequenceEmbeddings) -> torch.Tensor:
        """``[B, D_att]`` q^(2) of the batch from layer 1's search ``gsu`` (scores ``[B, N]``, one head)."""
        weights = masked_softmax(gsu.scores.gather(1, gsu.top_indices), gsu.top_mask)
        keys = jagged_gather(emb.att_hist, emb.offsets, gsu.top_indices, gsu.top_mask, self.kernel)
        return self.query(emb.att_target, weights, keys)

    def query(self, target: torch.Tensor, weights: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """``[B, D_att]`` q^(2) from ``target [B, D_att]``, layer 1's ``weights [B, K]`` (0 where masked) and the
        selected behaviors' ``keys [B, K, D_att]`` (any finite value where masked), in ``target``'s dtype."""
        context = (weights.unsqueeze(-1) * keys).sum(1)
        return (self.target(target) + self.context(context)).to(target.dtype)


def position_vectors(table: torch.Tensor, positions: torch.Tensor,
                     objectives: Optional[torch.Tensor]) -> torch.Tensor:
    """Rows of a position table: ``table [P, d]`` at ``positions`` (int, any shape) -> ``positions.shape + [d]``;
    with O objectives ``table [O, P, d]`` and ``objectives`` (int, broadcastable to ``positions``) the slice of
    each position's sample."""
    return table[positions] if objectives is None else table[objectives, positions]


def target_positions(vector: torch.Tensor, objectives: Optional[torch.Tensor], num: int) -> torch.Tensor:
    """``[num, d]`` the target's position vector of ``num`` samples: ``vector [d]`` repeated, or with O
    objectives ``vector [O, d]`` (each slice's row 0) read at ``objectives [num]``."""
    return vector.expand(num, -1) if objectives is None else vector[objectives]


def target_vector(emb: SequenceEmbeddings, add: bool = False) -> torch.Tensor:
    """``v_t^R``: ``[B, n * d_rep (+ d_pos) (+ S * d_pos)]`` representation of the target, with position 0 (of
    the sample's objective slice) and row 0 of each side field when used (the target has no behavior type or
    gap: row 0 is a learned vector); ``add`` (``temporal_merge add``): ``[B, n * d_rep (+ d_pos)]``, the side rows
    added to ``[item; cate; ...]``."""
    position = None if emb.rep_target_position is None else \
        target_positions(emb.rep_target_position, emb.objectives, emb.rep_target.size(0))
    side = None
    if emb.rep_target_side is not None:
        side = emb.rep_target_side.sum(0, keepdim=True) if add else emb.rep_target_side.reshape(1, -1)
        side = side.expand(emb.rep_target.size(0), -1)
    return merge_parts(emb.rep_target, position, side, add)


def selected_rows(values: torch.Tensor, offsets: torch.Tensor, top_indices: torch.Tensor,
                  top_mask: torch.Tensor) -> torch.Tensor:
    """``values [L, S]`` (jagged like the history) of the selected slots -> ``[B, K, S]``; a masked slot reads
    zeros. A zero row is put in front, so an empty batch (L = 0) has a row to read: no shape depends on data."""
    padded = torch.cat([values.new_zeros(1, values.size(1)), values])
    return padded[torch.where(top_mask, offsets[:-1].unsqueeze(1) + top_indices + 1, 0)]

