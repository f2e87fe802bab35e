"""Every variant's logits on a tiny input against the model math written out here, behavior by behavior.

The expectation reads only the model's parameters (the tables, position tables, projections, DIN's MLP, the
over-arch) and recomputes the forward with the formulas of docs/design.md §4 in plain loops: lookups, the
search score (dot product scaled per part, or DIN's MLP), the selection (top-K by score, or hard search), the
softmax over the K selected, the representation sum with positions, the over-arch input and its MLP. Parameters
are redrawn N(0, 1) so that scores are far apart and the selection is unambiguous.
"""

from __future__ import annotations

import math

import pytest
import torch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from dare_rec.data.batch import SPARSE_KEYS
from dare_rec.modules.model import build_model
from dare_rec.modules.variants import VARIANTS
from tests.conftest import tiny_config

D_ATT, D_REP, D_POS, D_POS_ATT, K = 2, 3, 2, 3, 2
# two samples: histories oldest -> newest (ids >= 1), targets
HISTORY_ITEMS = [[3, 5, 7, 2], [4]]
HISTORY_CATES = [[1, 2, 1, 3], [2]]
TARGET_ITEMS, TARGET_CATES = [5, 6], [1, 2]


def features() -> KeyedJaggedTensor:
    values = {"hist_item": sum(HISTORY_ITEMS, []), "hist_cate": sum(HISTORY_CATES, []),
              "target_item": TARGET_ITEMS, "target_cate": TARGET_CATES}
    lengths = {"hist_item": [len(h) for h in HISTORY_ITEMS], "hist_cate": [len(h) for h in HISTORY_CATES],
               "target_item": [1, 1], "target_cate": [1, 1]}
    return KeyedJaggedTensor(keys=list(SPARSE_KEYS), values=torch.tensor(sum((values[k] for k in SPARSE_KEYS), [])),
                             lengths=torch.tensor(sum((lengths[k] for k in SPARSE_KEYS), []), dtype=torch.int32))


def build(variant: str, lookup: str):
    cfg = tiny_config("--model.variant", variant, "--model.d_att", str(D_ATT), "--model.d_rep", str(D_REP),
                      "--model.d_pos", str(D_POS), "--model.d_pos_att", str(D_POS_ATT), "--model.top_k", str(K),
                      "--model.mlp_hidden", "[4]", "--model.batch_norm", "false", "--model.aux_loss", "false",
                      "--sharding.lookup", lookup)
    torch.manual_seed(0)
    model = build_model(cfg, 10, 4, torch.device("cpu"), torch.device("cpu")).model
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model.eval(), cfg.model


class ByHand:
    """The forward of one variant, written from the model's parameters."""

    def __init__(self, model, cfg) -> None:
        self.model, self.spec = model, cfg.spec()
        arch = model.sparse_arch
        self.tables = {}
        for collection in arch.collections.values():
            bags = getattr(collection, "embedding_bags", None) or collection.embeddings
            self.tables.update({name: module.weight.detach() for name, module in bags.items()})
        self.positions = {name: t.weight.detach() for name, t in arch.positions.items()} if arch.positions else {}
        self.projections = arch.projections

    def group(self, role: str, side: str) -> str:
        layout = self.spec.layout
        return "shared" if layout == "shared" else role if layout == "decoupled" else f"{role}_{side}"

    def project(self, role: str, side: str, part: str, vector: torch.Tensor) -> torch.Tensor:
        if self.projections is None:
            return vector
        maps = self.projections[f"{role}_{side}"]
        linear = maps.position if part == "position" else maps.fields[part]
        return linear.weight.detach() @ vector

    def vector(self, role: str, side: str, item: int, cate: int) -> torch.Tensor:
        g = self.group(role, side)
        return torch.cat([self.project(role, side, "item", self.tables[f"item_{g}"][item]),
                          self.project(role, side, "cate", self.tables[f"cate_{g}"][cate])])

    def position(self, role: str, side: str, p: int) -> torch.Tensor:
        return self.project(role, side, "position", self.positions[self.group(role, side)][p])

    def score(self, key: torch.Tensor, query: torch.Tensor, p: int) -> float:
        if self.spec.score == "din_mlp":
            din = self.model.gsu.din.mlp
            first, prelu, second = din[0], din[1], din[2]
            x = torch.cat([query, key, query - key, query * key])
            hidden = first.weight.detach() @ x + first.bias.detach()
            hidden = torch.where(hidden > 0, hidden, prelu.weight.detach() * hidden)
            return float((second.weight.detach() @ hidden + second.bias.detach())[0] / key.numel())
        semantic = float(key @ query) / math.sqrt(key.numel())
        if not self.spec.positions:
            return semantic
        p_i, p_0 = self.position("att", "hist", p), self.position("att", "target", 0)
        return semantic + float(p_i @ p_0) / math.sqrt(p_i.numel())

    def logit(self, b: int) -> float:
        items, cates = HISTORY_ITEMS[b], HISTORY_CATES[b]
        n = len(items)
        query = self.vector("att", "target", TARGET_ITEMS[b], TARGET_CATES[b])
        scores = [self.score(self.vector("att", "hist", items[j], cates[j]), query, n - j) for j in range(n)]
        if self.spec.search == "hard":  # the target's category first, the most recent first within each group
            order = sorted(range(n), key=lambda j: (cates[j] != TARGET_CATES[b], -j))
        else:
            order = sorted(range(n), key=lambda j: -scores[j])
        chosen = order[:K]
        weights = torch.softmax(torch.tensor([scores[j] for j in chosen]), dim=0)
        rep = [self.vector("rep", "hist", items[j], cates[j]) for j in chosen]
        if self.spec.positions:
            rep = [torch.cat([r, self.position("rep", "hist", n - j)]) for r, j in zip(rep, chosen)]
        h = sum(w * r for w, r in zip(weights, rep))
        target = self.vector("rep", "target", TARGET_ITEMS[b], TARGET_CATES[b])
        if self.spec.positions:
            target = torch.cat([target, self.position("rep", "target", 0)])
        x = torch.cat([target, h, target * h] if self.spec.target_aware else [target, h])
        over = self.model.over_arch
        linear, prelu = over.mlp[0], over.mlp[1]
        hidden = linear.weight.detach() @ x + linear.bias.detach()
        hidden = torch.where(hidden > 0, hidden, prelu.weight.detach() * hidden)
        return float(over.final.weight.detach() @ hidden + over.final.bias.detach())


@pytest.mark.parametrize("lookup", ["sequence", "singleton_bags"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_logits_match_the_math_written_out(variant, lookup):
    model, cfg = build(variant, lookup)
    with torch.no_grad():
        logits = model(features()).logits
    expected = ByHand(model, cfg)
    torch.testing.assert_close(logits, torch.tensor([expected.logit(0), expected.logit(1)]), atol=1e-4, rtol=1e-4)
