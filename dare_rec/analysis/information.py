"""Entropy and mutual information of discrete variables, in bits (numpy only)."""

from __future__ import annotations

import numpy as np


def entropy(labels: np.ndarray) -> float:
    """H(labels) in bits; ``labels`` ``[n]`` of any integer values."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) in bits from the joint counts of two equally long ``[n]`` integer arrays."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"mutual_information: two [n] arrays expected, got {a.shape} and {b.shape}")
    _, a_ids = np.unique(a, return_inverse=True)
    _, b_ids = np.unique(b, return_inverse=True)
    joint = np.zeros((a_ids.max() + 1, b_ids.max() + 1))
    np.add.at(joint, (a_ids, b_ids), 1.0)
    p = joint / a.size
    outer = p.sum(1, keepdims=True) * p.sum(0, keepdims=True)
    nz = p > 0
    return float((p[nz] * np.log2(p[nz] / outer[nz])).sum())


def normalized_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) / mean(H(a), H(b)) (scikit-learn's default normalisation); 1 when both are constant."""
    h = 0.5 * (entropy(a) + entropy(b))
    return 1.0 if h == 0 else mutual_information(a, b) / h


def binary_feature_information(x_pos: np.ndarray, x_neg: np.ndarray, t_pos: np.ndarray,
                               t_neg: np.ndarray) -> np.ndarray:
    """I(label; x) in bits for a binary feature x, from counts (broadcasting arrays of any shape).

    Among ``t_pos`` positive and ``t_neg`` negative samples, ``x_pos`` positives and ``x_neg`` negatives have
    x = 1. Cells with a zero count contribute 0 (the limit of p log p); all-zero totals give 0.
    """
    x_pos, x_neg, t_pos, t_neg = (np.asarray(v, dtype=np.float64) for v in (x_pos, x_neg, t_pos, t_neg))
    total = t_pos + t_neg
    x_on = x_pos + x_neg
    cells = [(x_pos, x_on, t_pos), (x_neg, x_on, t_neg),
             (t_pos - x_pos, total - x_on, t_pos), (t_neg - x_neg, total - x_on, t_neg)]
    out = np.zeros(np.broadcast(x_pos, x_neg, t_pos, t_neg).shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        for joint, row, col in cells:
            term = joint / total * np.log2(joint * total / (row * col))
            out += np.where(joint > 0, term, 0.0)
    return out
