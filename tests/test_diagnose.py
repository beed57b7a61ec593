"""diagnose: twin separation tells a collaborative model from a text-only one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from galrec.baselines import EmbeddingScorer
from galrec.evaluation.diagnose import diagnose_twins
from synthetic_graph import Pairs, SyntheticSplits

GROUPS = 10


def twin_world() -> tuple[SyntheticSplits, np.ndarray, np.ndarray, np.ndarray]:
    """2 communities; twin group g is items (2g, 2g+1), owned by community 0 and 1.

    Each user consumes 7 of its own community's twins: 5 train, 1 valid, 1 test.
    """
    rng = np.random.default_rng(0)
    num_users = 40
    user_communities = np.arange(num_users) % 2
    item_communities = np.arange(2 * GROUPS) % 2
    twin_groups = np.arange(2 * GROUPS).reshape(GROUPS, 2)
    parts: dict[str, tuple[list[int], list[int]]] = {
        s: ([], []) for s in ("train", "valid", "test")
    }
    for user, community in enumerate(user_communities):
        own = rng.permutation(GROUPS)[:7] * 2 + community
        for split, items in (("train", own[:5]), ("valid", own[5:6]), ("test", own[6:])):
            parts[split][0].extend([user] * len(items))
            parts[split][1].extend(items.tolist())
    pairs = {s: Pairs(np.array(u), np.array(i)) for s, (u, i) in parts.items()}
    data = SyntheticSplits(num_users, 2 * GROUPS, pairs["train"], pairs["valid"], pairs["test"])
    return data, user_communities, item_communities, twin_groups


def test_collaborative_model_separates_twins_and_text_model_does_not() -> None:
    data, user_c, item_c, groups = twin_world()
    # Collaborative: users and items embedded by community, twins orthogonal.
    collaborative = EmbeddingScorer(np.eye(2)[user_c], np.eye(2)[item_c])
    # Text-only: every twin of a group gets the same vector, users see only the group.
    group_vectors = np.random.default_rng(1).normal(size=(GROUPS, 4))
    text_items = group_vectors[np.arange(2 * GROUPS) // 2]
    text_only = EmbeddingScorer(np.ones((data.num_users, 4)), text_items)

    good = diagnose_twins(
        collaborative,
        data,
        user_c,
        item_c,
        groups,
        k=3,
        item_embeddings=collaborative.item_embeddings(),
        device="cpu",
    )
    assert good.twin_accuracy == 1.0 and good.num_twin_targets == data.num_users
    assert good.wrong_twin_rate == 0.0 and good.right_twin_rate == 1.0
    assert good.twin_cosine == pytest.approx(0.0, abs=1e-6)

    bad = diagnose_twins(
        text_only,
        data,
        user_c,
        item_c,
        groups,
        k=3,
        item_embeddings=text_only.item_embeddings(),
        device="cpu",
    )
    assert bad.twin_accuracy == 0.5  # identical scores: every comparison is a tie
    assert bad.wrong_twin_rate > 0.9
    assert bad.twin_cosine == pytest.approx(1.0, abs=1e-6)
    assert bad.random_cosine < 0.9
    assert "0.5 = chance" in bad.format() and "wrong_twin_rate@3" in bad.format()


def test_without_embeddings_cosine_is_not_available() -> None:
    data, user_c, item_c, groups = twin_world()

    class Scores:
        num_items = data.num_items

        def score_users(self, users: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(users), self.num_items)

    diagnosis = diagnose_twins(Scores(), data, user_c, item_c, groups, k=2, device="cpu")
    assert diagnosis.twin_cosine is None and "n/a" in diagnosis.format()
    with pytest.raises(ValueError, match="twin_groups"):
        diagnose_twins(Scores(), data, user_c, item_c, np.zeros((0, 2), dtype=int))
