"""Over-arch MLP: features -> one click logit."""

from __future__ import annotations

from typing import List

import torch
from torch import nn


class OverArch(nn.Module):
    """Optional ``BatchNorm1d``, then ``Linear -> PReLU`` per hidden size, then ``Linear -> 1`` (the reference
    code's 200 -> 80 tower). Under bf16 autocast the final layer still runs in float32, so the logit (and the
    loss computed from it) keeps full precision.

    Args:
        in_features: input width.
        hidden: hidden sizes, e.g. ``[200, 80]``.
        batch_norm: normalise the input (batch statistics in training, running statistics in eval mode).
        device: parameter device.
    """

    def __init__(self, in_features: int, hidden: List[int], batch_norm: bool, device: torch.device) -> None:
        super().__init__()
        layers: List[nn.Module] = [nn.BatchNorm1d(in_features, device=device)] if batch_norm else []
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size, device=device), nn.PReLU(device=device)]
            width = size
        self.mlp = nn.Sequential(*layers)
        self.final = nn.Linear(width, 1, device=device)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, in_features]`` -> float32 logits ``[B]``."""
        hidden = self.mlp(features)
        with torch.autocast(hidden.device.type, enabled=False):
            return self.final(hidden.float()).squeeze(-1)
