"""The model spec: independent axes of the DARE family and the named variants that preset them.

Torch-free on purpose: ``dare_rec.config`` validates against this registry, and light jobs (``prepare``)
import the config without importing torch. Everything that builds modules reads a resolved
:class:`ModelSpec` (``ModelConfig.spec()``), never a variant name.

Axes (docs/design.md §4):

* ``layout``: which embedding table sets exist.
  ``shared`` (TWIN): one set serves attention and representation, history and target.
  ``decoupled`` (DARE): an attention set (dim ``d_att``) and a representation set (dim ``d_rep``).
  ``four`` (TWIN-4E): attention/representation x history/target, four sets.
* ``projection``: ``none``, or ``linear``: per-role, per-side, per-field square linear maps (no bias) applied
  to the looked-up vectors (query = attention of the target, key = attention of a behavior, value =
  representation of a behavior, and representation of the target; fields item, category, position), i.e.
  the reference code's ``projection`` model run with ``-mlp_position_after_concat`` as its script does.
* ``score``: ``dot``: ``<e_i, v_t> / sqrt(width) + <p_i, p_0> / sqrt(d_pos_att)`` (semantic and position
  parts scaled separately); ``din_mlp``: DIN's MLP over ``[q, k, q - k, q * k]`` (36 hidden, PReLU) divided
  by the attention width.
* ``search``: ``soft``: top-K by score; ``hard``: behaviors of the target's category, most recent K, filled
  with the most recent other behaviors when fewer than K match (``model.hard_levels`` adds brand and seller
  levels and ``model.hard_fill`` a fill by score: config fields, not axes, as they only exist for hard search).
* ``target_aware``: over-arch input ``[v_t; h; v_t * h]`` (TIN's target-aware representation) or ``[v_t; h]``.
* ``positions``: target-relative position embeddings on both sides (off only for DIN, as the reference
  code runs it).
* ``attention_width``: the dims of the attention tables of a layout that has them: ``d_att`` (and
  ``d_pos_att``), DARE's small attention dimension; or ``d_rep`` (and ``d_pos``), the representation's, which is
  how the reference code runs TWIN-4E (its attention dims default to the representation dims), so that
  TWIN-4E differs from TWIN in its tables only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Tuple

LAYOUTS = ("shared", "decoupled", "four")
PROJECTIONS = ("none", "linear")
SCORES = ("dot", "din_mlp")
SEARCHES = ("soft", "hard")
ATTENTION_WIDTHS = ("d_att", "d_rep")

# Axis name -> its legal values (booleans for the on/off axes).
AXES: Dict[str, Tuple] = {
    "layout": LAYOUTS,
    "projection": PROJECTIONS,
    "score": SCORES,
    "search": SEARCHES,
    "target_aware": (True, False),
    "positions": (True, False),
    "attention_width": ATTENTION_WIDTHS,
}


@dataclass(frozen=True)
class ModelSpec:
    """One point of the variant space (see the module docstring for the meaning of each axis)."""

    layout: str
    projection: str
    score: str
    search: str
    target_aware: bool
    positions: bool
    attention_width: str

    @property
    def has_attention_tables(self) -> bool:
        """Whether attention has tables of its own (and so may have dims of its own)."""
        return self.layout != "shared"


_DARE = ModelSpec(layout="decoupled", projection="none", score="dot", search="soft", target_aware=True,
                  positions=True, attention_width="d_att")
_TWIN = ModelSpec(layout="shared", projection="none", score="dot", search="soft", target_aware=True,
                  positions=True, attention_width="d_rep")

# The paper's Table 1 models (docs/design.md §4). Each differs from TWIN in one axis, except DIN (score and no
# positions, as the reference script runs it with -use_time) and DARE (layout and attention width).
VARIANTS: Dict[str, ModelSpec] = {
    "dare": _DARE,
    "twin": _TWIN,
    "twin_no_tr": replace(_TWIN, target_aware=False),
    "twin_4e": replace(_TWIN, layout="four"),  # attention tables at d_rep, as the reference runs it
    "twin_proj": replace(_TWIN, projection="linear"),
    "twin_hard": replace(_TWIN, search="hard"),
    "din": replace(_TWIN, score="din_mlp", positions=False),
}

VARIANT_HELP = {
    "dare": "decoupled attention (d_att) and representation (d_rep) tables",
    "twin": "one shared table set for attention and representation",
    "twin_no_tr": "TWIN without the target-aware product in the over-arch input",
    "twin_4e": "four table sets: attention/representation x history/target",
    "twin_proj": "TWIN with per-role linear projections of the shared tables",
    "twin_hard": "TWIN with hard search: same-category behaviors, most recent first",
    "din": "DIN attention (MLP over [q, k, q-k, q*k]) on shared tables, no positions",
}
