"""The semantic-gap diagnostic and the dataset summary."""

from __future__ import annotations

import numpy as np
from galrec.data.diagnostics import semantic_gap, summarize, tfidf
from galrec.data.prepared import Interactions, PreparedDataset
from galrec.data.semantic_gap import SemanticGapConfig, generate_semantic_gap


def clustered_dataset(titles_follow_clusters: bool) -> PreparedDataset:
    """4 clusters of 10 items, each consumed by its own 10 users; titles name the cluster
    (text agrees with co-interaction) or a cluster chosen at random (text disagrees)."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(40), 10)
    items = (users // 10) * 10 + np.tile(np.arange(10), 40)
    words = ["alpha", "beta", "gamma", "delta"]
    cluster_of_title = np.arange(40) // 10 if titles_follow_clusters else rng.permutation(40) // 10
    texts = [f"{words[c]} {words[c]} thing {n}" for n, c in enumerate(cluster_of_title)]
    empty = Interactions(np.zeros(0), np.zeros(0), np.zeros(0))
    return PreparedDataset(
        name="clusters",
        num_users=40,
        num_items=40,
        train=Interactions(users, items, np.arange(len(users))),
        valid=empty,
        test=empty,
        item_texts=texts,
        user_ids=[str(n) for n in range(40)],
        item_ids=[str(n) for n in range(40)],
    )


def test_gap_is_small_when_text_follows_interactions() -> None:
    agreeing = semantic_gap(clustered_dataset(True), k=5)
    disagreeing = semantic_gap(clustered_dataset(False), k=5)
    assert agreeing.sampled == 40
    assert agreeing.gap < 0.05
    assert disagreeing.gap > 0.5
    assert agreeing.twin_text_nearest is None


def test_semantic_gap_dataset_has_a_large_gap_between_twins() -> None:
    dataset = generate_semantic_gap(SemanticGapConfig(num_users=120, num_twin_groups=20))
    result = semantic_gap(dataset, sample=100)
    assert result.gap > 0.8
    assert result.twin_text_nearest is not None and result.twin_text_nearest > 0.9
    assert result.twin_graph_nearest is not None and result.twin_graph_nearest < 0.1


def test_tfidf_rows_are_unit_length_and_rare_words_weigh_more() -> None:
    matrix = tfidf(["red lamp", "red chair", "red lamp shade", ""])
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    assert np.allclose(norms[:3], 1.0) and norms[3] == 0
    first = matrix[0].toarray().ravel()
    assert first.max() > first[first > 0].min()  # "lamp" (2 docs) outweighs "red" (3 docs)


def test_summary_counts_and_degree_percentiles() -> None:
    summary = summarize(clustered_dataset(True))
    assert summary["interactions"] == 400 and summary["density"] == 0.25
    assert summary["user_degree"]["p50"] == 10 and summary["item_degree"]["p100"] == 10
    assert summary["splits"] == {"train": 400, "valid": 0, "test": 0}
