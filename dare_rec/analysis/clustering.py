"""Representation discriminability (DARE §4.4): cluster representations with mini-batch k-means and measure
how much the cluster id tells about the label.

scikit-learn is an optional dependency (``pip install -e .[analysis]``), imported when clustering runs.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
from tqdm import tqdm

from dare_rec.analysis.information import entropy, mutual_information, normalized_mutual_information
from dare_rec.config import ConfigError

# The paper's (and the official script's) numbers of clusters.
CLUSTER_COUNTS = (2, 5, 10, 20, 30, 50, 100, 200, 300, 500, 700, 1000)


def _minibatch_kmeans():
    try:
        from sklearn.cluster import MiniBatchKMeans
    except ImportError as e:
        raise ConfigError("analyze representation: needs scikit-learn; install the analysis extra "
                          "(pip install -e '.[analysis]')") from e
    return MiniBatchKMeans


def cluster_information(vectors: np.ndarray, labels: np.ndarray, cluster_counts: Sequence[int], seeds: Sequence[int],
                        progress: bool = True, desc: str = "k-means") -> Dict[str, object]:
    """I(cluster; label) and its normalised form for each number of clusters k, mean and spread over seeds.

    Args:
        vectors: ``[n, d]`` representations.
        labels: ``[n]`` labels.
        cluster_counts: values of k (those >= n are skipped).
        seeds: k-means seeds (one clustering per seed and k).

    Returns:
        ``{"k": [...], "mi_bits": {"mean": [...], "std": [...], "per_seed": [[...], ...]}, "nmi": {...},
        "label_entropy_bits": H(label)}``; MI cannot exceed H(label).
    """
    kmeans = _minibatch_kmeans()
    ks = [k for k in cluster_counts if k < len(vectors)]
    mi = np.zeros((len(seeds), len(ks)))
    nmi = np.zeros((len(seeds), len(ks)))
    bar = tqdm(total=len(seeds) * len(ks), desc=desc, unit="fit", leave=False, disable=not progress)
    for si, seed in enumerate(seeds):
        for ki, k in enumerate(ks):
            clusters = kmeans(n_clusters=k, random_state=seed, n_init=1).fit_predict(vectors)
            mi[si, ki] = mutual_information(clusters, labels)
            nmi[si, ki] = normalized_mutual_information(clusters, labels)
            bar.update(1)
    bar.close()

    def stats(values: np.ndarray) -> Dict[str, List]:
        return {"mean": values.mean(0).tolist(), "std": values.std(0).tolist(), "per_seed": values.tolist()}

    return {"k": ks, "seeds": list(seeds), "mi_bits": stats(mi), "nmi": stats(nmi),
            "label_entropy_bits": entropy(labels)}
