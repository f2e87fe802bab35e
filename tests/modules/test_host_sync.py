"""No host synchronisation inside the step: the model's training forward + backward and its evaluation forward
(the selected-only representation lookup) run every variant, with the aux head on, off and bounded (a sampled
subset of the history), under a dispatch mode that records every op that makes a GPU wait for its results on
the host.

Recorded: ``_local_scalar_dense`` (``.item()``, ``int(t)``, ``bool(t)``), ``nonzero`` and the ops built on it
(boolean-mask ``index`` / ``index_put``, ``masked_select``), ``Tensor.tolist()`` (on CPU it reads memory without
dispatching, so it is patched), and copies from a CUDA tensor to the CPU. On CPU the last cannot happen; the
others are what would synchronise on CUDA, whatever device this runs on.
"""

from __future__ import annotations

from typing import List

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dare_rec.data.batch import Batch
from dare_rec.data.parquet import ParquetBatchReader
from dare_rec.modules.model import build_model
from dare_rec.modules.variants import VARIANTS
from tests.conftest import tiny_config

aten = torch.ops.aten
_SYNCING = {aten._local_scalar_dense.default, aten.nonzero.default, aten.nonzero_static.default,
            aten.masked_select.default}


class HostSyncGuard(TorchDispatchMode):
    """Records the host-synchronising ops dispatched while active (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: List[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SYNCING:
            self.seen.append(str(func))
        elif func.overloadpacket in (aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_):
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None):
                self.seen.append(f"{func} with a boolean mask")
        elif func.overloadpacket in (aten._to_copy, aten.copy_):
            source = args[1] if func.overloadpacket is aten.copy_ else args[0]
            target = kwargs.get("device", args[0].device if func.overloadpacket is aten.copy_ else None)
            if source.device.type == "cuda" and target is not None and torch.device(target).type == "cpu":
                self.seen.append(f"{func} from CUDA to the host")
        return func(*args, **kwargs)


@pytest.fixture()
def guard(monkeypatch):
    mode = HostSyncGuard()
    tolist = torch.Tensor.tolist

    def recorded_tolist(self):
        mode.seen.append("Tensor.tolist")
        return tolist(self)

    monkeypatch.setattr(torch.Tensor, "tolist", recorded_tolist)
    return mode



def step_and_evaluate(guard, train, batch) -> None:
    """A training step (forward, backward) and an evaluation forward of ``batch`` under ``guard``, which must
    have seen no host sync."""
    with guard:
        loss, _ = train(batch)
        loss.backward()
        train.eval()
        with torch.no_grad():
            train(batch)
    assert not guard.seen, sorted(set(guard.seen))


def side_step(data, guard, cfg) -> Batch:
    """:func:`step_and_evaluate` of ``cfg``'s model (4 behavior types, 8 sellers, 6 brands) on the first batch of
    ``data``, read with the config's side fields, hard levels and target objectives; returns that batch."""
    torch.manual_seed(0)
    train = build_model(cfg, 501, 21, torch.device("cpu"), torch.device("cpu"), num_behavior_types=4,
                        side_vocabulary={"seller": 8, "brand": 6})
    batch = next(iter(ParquetBatchReader(data, "train", 64, max_len=cfg.data.max_len,
                                         side_fields=cfg.model.read_side_fields,
                                         hard_fields=cfg.model.hard_side_fields,
                                         objectives=cfg.model.position_objectives)))
    step_and_evaluate(guard, train, batch)
    return batch


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("aux", ["true", "false", "bounded"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_step_never_waits_for_the_host(tiny_data, guard, variant, aux, lookup):
    aux_args = ("--model.aux_loss", "true", "--model.aux_behaviors", "8") if aux == "bounded" else \
        ("--model.aux_loss", aux)  # bounded: the aux head over a stratified sample (8 < max_len)
    cfg = tiny_config("--model.variant", variant, *aux_args, "--sharding.lookup", lookup)
    torch.manual_seed(0)
    train = build_model(cfg, 501, 21, torch.device("cpu"), torch.device("cpu"))
    batch = next(iter(ParquetBatchReader(tiny_data, "train", 64, max_len=cfg.data.max_len)))
    step_and_evaluate(guard, train, batch)


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("aux", ["true", "bounded"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_side_fields_never_wait_for_the_host(tiny_side_data, guard, variant, aux, lookup):
    """Time gap and behavior type on (the reader's side keys come with their per-key sizes)."""
    aux_args = ("--model.aux_behaviors", "8") if aux == "bounded" else ("--model.aux_behaviors", "null")
    cfg = tiny_config("--model.variant", variant, "--model.aux_loss", "true", *aux_args, "--sharding.lookup", lookup,
                      "--model.side_fields", "[btype]", "--model.time_gap", "true")
    torch.manual_seed(0)
    train = build_model(cfg, 501, 21, torch.device("cpu"), torch.device("cpu"), num_behavior_types=4)
    batch = next(iter(ParquetBatchReader(tiny_side_data, "train", 64, max_len=cfg.data.max_len,
                                         side_fields=cfg.model.dense_side_fields)))
    assert batch.sparse_features.keys()[-2:] == ["hist_gap", "hist_btype"]
    step_and_evaluate(guard, train, batch)


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("fill", ["soft", "recent"])
def test_hierarchical_hard_search_never_waits_for_the_host(tiny_side_data, guard, fill, lookup):
    """twin_hard over category, brand and seller (the reader's brand and seller keys come with their per-key
    sizes), both fills, with the bounded aux head and a side field."""
    cfg = tiny_config("--model.variant", "twin_hard", "--model.aux_behaviors", "8", "--sharding.lookup", lookup,
                      "--model.hard_levels", "[cate, brand, seller]", "--model.hard_fill", fill,
                      "--model.side_fields", "[btype]")
    torch.manual_seed(0)
    train = build_model(cfg, 501, 21, torch.device("cpu"), torch.device("cpu"), num_behavior_types=4)
    batch = next(iter(ParquetBatchReader(tiny_side_data, "train", 64, max_len=cfg.data.max_len,
                                         side_fields=cfg.model.dense_side_fields,
                                         hard_fields=cfg.model.hard_side_fields)))
    assert batch.sparse_features.keys()[4:] == ["hist_btype", "hist_brand", "hist_seller", "target_brand",
                                                "target_seller"]
    step_and_evaluate(guard, train, batch)


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("aux", ["true", "false", "bounded"])
@pytest.mark.parametrize("variant", ["dare", "twin", "twin_hard"])
def test_stacked_tin_never_waits_for_the_host(tiny_side_data, guard, variant, aux, lookup):
    """Two ESU layers (model.esu_layers 2) with the side fields on: layer 2 gathers the selected (or every, in
    the full aux head) attention vectors by slot, as layer 1 gathers the representations."""
    aux_args = ("--model.aux_loss", "true", "--model.aux_behaviors", "8") if aux == "bounded" else \
        ("--model.aux_loss", aux, "--model.aux_behaviors", "null")
    cfg = tiny_config("--model.variant", variant, *aux_args, "--sharding.lookup", lookup, "--model.esu_layers", "2",
                      "--model.side_fields", "[btype]", "--model.time_gap", "true")
    side_step(tiny_side_data, guard, cfg)


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("aux", ["true", "bounded"])
@pytest.mark.parametrize("side_fields", ["[btype]", "[btype, seller, brand]"])
@pytest.mark.parametrize("variant,layers", [(v, "1") for v in sorted(VARIANTS)] + [("dare", "2"), ("twin_hard", "2")])
def test_temporal_add_never_waits_for_the_host(tiny_side_data, guard, variant, layers, side_fields, aux, lookup):
    """model.temporal_merge add with the time gap and behavior type (and seller and brand): the keys' one add
    (every behavior's position from the row offsets, its side rows) and the selected behaviors' representation
    rows stay on the device."""
    aux_args = ("--model.aux_behaviors", "8") if aux == "bounded" else ("--model.aux_behaviors", "null")
    cfg = tiny_config("--model.variant", variant, "--model.aux_loss", "true", *aux_args, "--sharding.lookup", lookup,
                      "--model.esu_layers", layers, "--model.temporal_merge", "add", "--model.side_fields",
                      side_fields, "--model.time_gap", "true")
    side_step(tiny_side_data, guard, cfg)


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("aux", ["true", "false", "bounded"])
@pytest.mark.parametrize("side_fields,heads", [("[btype]", "[[item, cate], [btype, pos]]"),
                                               ("[btype, brand]", "[[item, cate], [brand, btype, pos]]")])
@pytest.mark.parametrize("variant", ["dare", "twin"])
def test_attention_heads_never_wait_for_the_host(tiny_side_data, guard, variant, side_fields, heads, aux, lookup):
    """Two attention heads (DI-TIN) with the side fields on (a head of brand's block with side field brand): the
    heads' stacked search, their one lookup of B * H * K rows (with the bounded aux head's M), and the full aux
    head's per-head sums."""
    aux_args = ("--model.aux_loss", "true", "--model.aux_behaviors", "8") if aux == "bounded" else \
        ("--model.aux_loss", aux, "--model.aux_behaviors", "null")
    cfg = tiny_config("--model.variant", variant, *aux_args, "--sharding.lookup", lookup, "--model.side_fields",
                      side_fields, "--model.time_gap", "true", "--model.attention_heads", heads)
    side_step(tiny_side_data, guard, cfg)


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("aux", ["true", "bounded"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_seller_and_brand_never_wait_for_the_host(tiny_side_data, guard, variant, aux, lookup):
    """Side fields seller and brand (with btype and, for twin_hard, hard level brand on the same key): their
    tables are read like item's and their padding blocks zeroed without reading an id on the host."""
    aux_args = ("--model.aux_behaviors", "8") if aux == "bounded" else ("--model.aux_behaviors", "null")
    hard = ("--model.hard_levels", "[cate, brand]") if variant == "twin_hard" else ()
    cfg = tiny_config("--model.variant", variant, "--model.aux_loss", "true", *aux_args, "--sharding.lookup", lookup,
                      "--model.side_fields", "[btype, seller, brand]", *hard)
    batch = side_step(tiny_side_data, guard, cfg)
    assert batch.sparse_features.keys()[4:] == ["hist_btype", "hist_seller", "hist_brand", "target_seller",
                                                "target_brand"]


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("aux", ["true", "false", "bounded"])
@pytest.mark.parametrize("variant", ["dare", "twin_4e", "twin_proj", "twin_hard"])
def test_target_decoupled_positions_never_wait_for_the_host(tiny_objective_data, guard, variant, aux, lookup):
    """position_objectives 2: every sample's position slice is gathered on the device (the search's [B, N + 1]
    bias, the ESU's and the full aux head's position vectors, the target's), the objectives read from the reader's
    target_objective key."""
    aux_args = ("--model.aux_loss", "true", "--model.aux_behaviors", "8") if aux == "bounded" else \
        ("--model.aux_loss", aux, "--model.aux_behaviors", "null")
    cfg = tiny_config("--model.variant", variant, *aux_args, "--sharding.lookup", lookup,
                      "--model.position_objectives", "2")
    batch = side_step(tiny_objective_data, guard, cfg)
    assert batch.sparse_features.keys()[-1] == "target_objective"
