"""DareModel / DareTrain: variants, over-arch input, aux head, short histories, bf16 switch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dare_rec.data.parquet import ParquetBatchReader
from dare_rec.modules.embeddings import table_names
from dare_rec.modules.model import build_model
from tests.conftest import tiny_config

CPU = torch.device("cpu")


def first_batch(tiny_data, size=64):
    reader = ParquetBatchReader(tiny_data, "train", size, max_len=tiny_config().data.max_len)
    batch = next(iter(reader))
    lengths = batch.sparse_features["hist_item"].lengths()
    assert (lengths == 0).any() and (lengths < tiny_config().model.top_k).any(), "fixture lost its short histories"
    return batch


def model_for(*overrides):
    cfg = tiny_config(*overrides)
    torch.manual_seed(0)
    return build_model(cfg, 501, 21, CPU, CPU), cfg


def test_dare_has_decoupled_tables_with_independent_dims():
    train, cfg = model_for("--model.d_att", "4", "--model.d_rep", "12")
    collections = train.model.sparse_arch.collections
    assert set(collections) == {"att", "rep"}
    dims = {t.name: t.embedding_dim for ec in collections.values() for t in ec.embedding_configs()}
    assert dims == {"item_att": 4, "cate_att": 4, "item_rep": 12, "cate_rep": 12}
    assert table_names("dare") == list(dims)
    # each table is shared by the history and the target feature
    features = {t.name: t.feature_names for ec in collections.values() for t in ec.embedding_configs()}
    assert features["item_att"] == ["hist_item", "target_item"]
    assert set(train.model.sparse_arch.positions) == {"att", "rep"}


def test_twin_uses_one_table_set_for_attention_and_representation(tiny_data):
    train, _ = model_for("--model.variant", "twin", "--model.d_att", "16", "--model.d_rep", "16")
    arch = train.model.sparse_arch
    assert set(arch.collections) == {"shared"} and set(arch.positions) == {"shared"}
    emb = arch(first_batch(tiny_data).sparse_features)
    assert torch.equal(emb.att_hist, emb.rep_hist) and torch.equal(emb.att_target, emb.rep_target)


def test_over_arch_input_is_target_h_and_their_product(tiny_data):
    train, _ = model_for()
    model = train.model
    seen = {}
    model.sparse_arch.register_forward_hook(lambda m, i, o: seen.update(emb=o))
    model.esu.register_forward_hook(lambda m, i, o: seen.update(h=o))
    model.over_arch.register_forward_hook(lambda m, i, o: seen.update(features=i[0]))
    model(first_batch(tiny_data).sparse_features)
    rep_pos0 = model.sparse_arch.position_table("rep").weight[0]
    target = torch.cat([seen["emb"].rep_target, rep_pos0.expand(seen["emb"].rep_target.size(0), -1)], dim=1)
    torch.testing.assert_close(seen["features"], torch.cat([target, seen["h"], target * seen["h"]], dim=1))


def test_aux_head_only_in_training(tiny_data):
    train, _ = model_for()
    features = first_batch(tiny_data).sparse_features
    assert train.model(features).aux_logits is not None
    train.eval()
    assert train.model(features).aux_logits is None
    no_aux, _ = model_for("--model.aux_loss", "false")
    assert no_aux.model.aux_over_arch is None and no_aux.model(features).aux_logits is None


def test_loss_is_bce_plus_aux_in_training_and_main_only_in_eval(tiny_data):
    train, _ = model_for()
    batch = first_batch(tiny_data)
    loss, (loss_detached, logits, labels) = train(batch)
    out = train.model(batch.sparse_features)
    expected = F.binary_cross_entropy_with_logits(out.logits, labels) + \
        F.binary_cross_entropy_with_logits(out.aux_logits, labels)
    torch.testing.assert_close(loss, expected)
    assert not loss_detached.requires_grad and not logits.requires_grad
    train.eval()
    eval_loss, (_, eval_logits, _) = train(batch)
    torch.testing.assert_close(eval_loss, F.binary_cross_entropy_with_logits(eval_logits, labels))


def test_short_and_empty_histories_give_finite_outputs_and_gradients(tiny_data):
    train, _ = model_for()
    loss, (_, logits, _) = train(first_batch(tiny_data))
    loss.backward()
    assert torch.isfinite(logits).all()
    for name, p in train.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("variant,d_att", [("dare", 8), ("twin", 16)])
def test_bf16_autocast_keeps_float32_logits_close_to_fp32(tiny_data, variant, d_att):
    batch = first_batch(tiny_data)
    fp32, _ = model_for("--model.variant", variant, "--model.d_att", str(d_att))
    bf16, _ = model_for("--model.variant", variant, "--model.d_att", str(d_att), "--train.bf16", "true")
    bf16.load_state_dict(fp32.state_dict())
    a, b = fp32.model(batch.sparse_features).logits, bf16.model(batch.sparse_features).logits
    assert b.dtype == torch.float32
    torch.testing.assert_close(a, b, atol=0.05, rtol=0.05)
