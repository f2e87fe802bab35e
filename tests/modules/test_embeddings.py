"""How pooled lookups are split into role vectors (dare_rec/modules/embeddings.py)."""

from __future__ import annotations

import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor, KeyedTensor

from dare_rec.data import schema
from dare_rec.modules.kjt import split_bags
from dare_rec.modules.tables import HIST, TARGET


def batch_features(hist_count: int, target_count: int) -> KeyedJaggedTensor:
    """A KJT with ``hist_count`` behaviors and ``target_count`` targets (only the counts are read)."""
    ones = torch.ones(target_count, dtype=torch.int32)
    lengths = torch.tensor([hist_count] + [0] * (target_count - 1), dtype=torch.int32)
    return KeyedJaggedTensor(keys=[schema.HIST_ITEM, schema.HIST_CATE, schema.TARGET_ITEM, schema.TARGET_CATE],
                             values=torch.arange(2 * hist_count + 2 * target_count),
                             lengths=torch.cat([lengths, lengths, ones, ones]))


@pytest.mark.parametrize("order", [["item_att", "cate_att"], ["cate_att", "item_att"]])
def test_split_bags_gives_item_then_category_whatever_the_key_order(order):
    """A sharded collection may list its keys in another order than its tables (table-wise sharding lists
    them rank by rank); each set's vectors are still [item; cate], and gradients reach the right columns."""
    hist_count, target_count = 3, 2
    dims = {"item_att": 2, "cate_att": 3}
    rows = hist_count + target_count
    per_key = {"item_att": torch.arange(rows * 2.0).view(rows, 2), "cate_att": -torch.arange(rows * 3.0).view(rows, 3)}
    values = torch.cat([per_key[k] for k in order], dim=1).requires_grad_()
    pooled = KeyedTensor(keys=order, length_per_key=[dims[k] for k in order], values=values)
    out = split_bags(pooled, batch_features(hist_count, target_count), (("att", HIST), ("att", TARGET)),
                     ("item", "cate"))
    expected = torch.cat([per_key["item_att"], per_key["cate_att"]], dim=1)
    torch.testing.assert_close(out[("att", HIST)], expected[:hist_count])
    torch.testing.assert_close(out[("att", TARGET)], expected[hist_count:])
    # a gradient on the item columns of the history lands on the item key's columns of those rows only
    (out[("att", HIST)][:, :2].sum()).backward()
    item_columns = slice(0, 2) if order[0] == "item_att" else slice(3, 5)
    expected_grad = torch.zeros_like(values)
    expected_grad[:hist_count, item_columns] = 1.0
    torch.testing.assert_close(values.grad, expected_grad)


def test_split_bags_four_layout_takes_each_sets_columns():
    """Two sets in one collection (the four layout's attention history and target sets): each side reads its
    own set's columns."""
    hist_count, target_count = 2, 1
    rows = hist_count + target_count
    keys = ["item_att_hist", "cate_att_hist", "item_att_target", "cate_att_target"]
    values = torch.arange(rows * 4.0).view(rows, 4)
    pooled = KeyedTensor(keys=keys, length_per_key=[1, 1, 1, 1], values=values)
    out = split_bags(pooled, batch_features(hist_count, target_count),
                     (("att_hist", HIST), ("att_target", TARGET)), ("item", "cate"))
    torch.testing.assert_close(out[("att_hist", HIST)], values[:hist_count, :2])
    torch.testing.assert_close(out[("att_target", TARGET)], values[hist_count:, 2:])
