"""Entropy / mutual information on hand-built inputs."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from dare_rec.analysis.information import (binary_feature_information, entropy, mutual_information,
                                           normalized_mutual_information)


def test_perfectly_separating_clustering_has_the_label_entropy():
    labels = np.array([0, 0, 0, 1, 1, 0, 1, 0])
    clusters = np.array([4, 4, 7, 2, 9, 7, 2, 4])  # every cluster is pure: a refinement of the labels
    h = -(5 / 8 * math.log2(5 / 8) + 3 / 8 * math.log2(3 / 8))
    assert entropy(labels) == pytest.approx(h)
    assert mutual_information(clusters, labels) == pytest.approx(h)
    assert mutual_information(labels, labels) == pytest.approx(h)


def test_independent_clustering_has_no_information():
    labels = np.array([0, 1, 0, 1])
    clusters = np.array([0, 0, 1, 1])
    assert mutual_information(clusters, labels) == pytest.approx(0.0, abs=1e-12)
    assert normalized_mutual_information(clusters, labels) == pytest.approx(0.0, abs=1e-12)
    assert normalized_mutual_information(labels, labels) == pytest.approx(1.0)


def test_mutual_information_matches_scikit_learn():
    from sklearn import metrics
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 7, 500), rng.integers(0, 3, 500)
    b[a < 2] = 0  # some dependence
    assert mutual_information(a, b) == pytest.approx(metrics.mutual_info_score(a, b) / math.log(2))
    assert normalized_mutual_information(a, b) == pytest.approx(metrics.normalized_mutual_info_score(a, b))


def brute_force_information(xs, ys):
    """Plug-in I(x; y) in bits by counting pairs."""
    n = len(xs)
    joint, px, py = Counter(zip(xs, ys)), Counter(xs), Counter(ys)
    return sum(c / n * math.log2(c * n / (px[x] * py[y])) for (x, y), c in joint.items())


@pytest.mark.parametrize("x_pos,x_neg,t_pos,t_neg", [(3, 1, 5, 7), (0, 4, 5, 7), (5, 0, 5, 7), (5, 7, 5, 7)])
def test_binary_feature_information_counts_a_two_by_two_table(x_pos, x_neg, t_pos, t_neg):
    xs = [1] * x_pos + [0] * (t_pos - x_pos) + [1] * x_neg + [0] * (t_neg - x_neg)
    ys = [1] * t_pos + [0] * t_neg
    got = binary_feature_information(x_pos, x_neg, t_pos, t_neg)
    assert got == pytest.approx(brute_force_information(xs, ys), abs=1e-12)
