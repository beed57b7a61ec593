"""The semantic-gap generator: deterministic, twins near-identical in text but not in use."""

from __future__ import annotations

import numpy as np
import pytest
from galrec.data.prepared import PreparedDataset
from galrec.data.semantic_gap import SemanticGapConfig, generate_semantic_gap
from galrec.data.splits import SplitMethod, SplitOptions


@pytest.fixture(scope="module")
def dataset() -> PreparedDataset:
    return generate_semantic_gap()


def tokens(text: str) -> set[str]:
    return set(text.lower().split())


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def consumers(dataset: PreparedDataset) -> list[set[int]]:
    sets: list[set[int]] = [set() for _ in range(dataset.num_items)]
    for part in (dataset.train, dataset.valid, dataset.test):
        for user, item in zip(part.users.tolist(), part.items.tolist(), strict=True):
            sets[item].add(user)
    return sets


def test_default_is_small(dataset: PreparedDataset) -> None:
    assert dataset.num_users == 400
    assert dataset.num_items == 220
    assert 400 * 15 <= dataset.num_interactions <= 400 * 30
    assert len(dataset.test) == len(dataset.valid) == 400
    assert dataset.info["report"]["items_without_text"] == 0


def test_deterministic_from_seed(dataset: PreparedDataset) -> None:
    again = generate_semantic_gap()
    other = generate_semantic_gap(SemanticGapConfig(seed=1))
    assert np.array_equal(again.train.items, dataset.train.items)
    assert np.array_equal(again.train.timestamps, dataset.train.timestamps)
    assert again.item_texts == dataset.item_texts
    assert not np.array_equal(other.train.items[:100], dataset.train.items[:100])


def test_twins_share_titles_but_not_consumers(dataset: PreparedDataset) -> None:
    truth = dataset.ground_truth
    assert truth is not None and truth.twin_groups.shape == (60, 2)
    who = consumers(dataset)
    title_similarity, consumer_similarity = [], []
    for first, second in truth.twin_groups:
        assert truth.item_communities[first] != truth.item_communities[second]
        title_similarity.append(
            jaccard(tokens(dataset.item_texts[first]), tokens(dataset.item_texts[second]))
        )
        consumer_similarity.append(jaccard(who[first], who[second]))
    assert min(title_similarity) >= 0.7
    assert np.mean(consumer_similarity) < 0.1
    # Titles of different groups are far apart: the gap is between twins, not everything.
    first_titles = [tokens(dataset.item_texts[group[0]]) for group in truth.twin_groups]
    across = [jaccard(first_titles[0], other) for other in first_titles[1:]]
    assert np.mean(across) < 0.4


def test_twin_consumers_are_their_own_community(dataset: PreparedDataset) -> None:
    truth = dataset.ground_truth
    assert truth is not None
    who = consumers(dataset)
    own = total = 0
    for item in np.flatnonzero(truth.item_communities >= 0):
        communities = truth.user_communities[list(who[item])]
        own += int((communities == truth.item_communities[item]).sum())
        total += len(communities)
    assert own / total > 0.85


def test_communities_are_separable_from_training_interactions(dataset: PreparedDataset) -> None:
    truth = dataset.ground_truth
    assert truth is not None
    matrix = np.zeros((dataset.num_users, dataset.num_items))
    matrix[dataset.train.users, dataset.train.items] = 1.0
    normed = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    similarity = normed @ normed.T
    np.fill_diagonal(similarity, -1.0)
    nearest = similarity.argmax(axis=1)
    agreement = (truth.user_communities[nearest] == truth.user_communities).mean()
    assert agreement > 0.9
    assert np.bincount(truth.user_communities).tolist() == [100, 100, 100, 100]


def test_popularity_is_skewed(dataset: PreparedDataset) -> None:
    degree = np.bincount(dataset.train.items, minlength=dataset.num_items)
    ordinary = np.flatnonzero(dataset.ground_truth.item_communities < 0)  # type: ignore[union-attr]
    top = np.sort(degree[ordinary])[::-1]
    assert top[:10].sum() > 0.4 * top.sum()


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="twins_per_group"):
        SemanticGapConfig(num_communities=2, twins_per_group=3)
    with pytest.raises(ValueError, match="twin_share and noise"):
        SemanticGapConfig(twin_share=0.9, noise=0.2)


def test_more_twins_per_group_and_communities() -> None:
    config = SemanticGapConfig(
        num_communities=5, twins_per_group=3, num_users=100, num_twin_groups=10, seed=4
    )
    dataset = generate_semantic_gap(config)
    truth = dataset.ground_truth
    assert truth is not None and truth.twin_groups.shape == (10, 3)
    for group in truth.twin_groups:
        assert len(set(truth.item_communities[group].tolist())) == 3


def test_config_accepts_a_split_mapping_from_yaml() -> None:
    config = SemanticGapConfig(
        num_users=40, num_twin_groups=6, split={"method": "ratio", "test_ratio": 0.2}
    )
    assert config.split == SplitOptions(SplitMethod.RATIO, 0.1, 0.2, 0)
    dataset = generate_semantic_gap(config)
    assert dataset.info["options"]["split"]["method"] == "ratio"
    assert len(dataset.test) > dataset.num_users
