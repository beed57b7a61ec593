"""The representation geometry compare reports: sampled, and asking a model for few nodes."""

from __future__ import annotations

import numpy as np
import torch
from galrec.baselines.scorers import EmbeddingScorer
from galrec.evaluation.alignment import alignment, model_geometry, uniformity


def test_geometry_of_a_small_model_uses_every_pair_and_item() -> None:
    g = torch.Generator().manual_seed(0)
    users, items = torch.randn(30, 8, generator=g), torch.randn(12, 8, generator=g)
    pairs = (np.arange(30), np.arange(30) % 12)
    found = model_geometry(EmbeddingScorer(users, items), pairs, 12)
    assert np.isclose(found.alignment, alignment(users, items[torch.from_numpy(pairs[1])]))
    assert np.isclose(found.user_uniformity, uniformity(users))
    assert np.isclose(found.item_uniformity, uniformity(items))


def test_a_model_that_encodes_nodes_is_asked_for_the_sample_only() -> None:
    g = torch.Generator().manual_seed(1)
    tables = {"user": torch.randn(5000, 8, generator=g), "item": torch.randn(3000, 8, generator=g)}
    asked: dict[str, np.ndarray] = {}

    class Encoder:
        def representations_of(self, side: str, nodes: np.ndarray) -> torch.Tensor:
            asked[side] = nodes
            return tables[side][torch.from_numpy(nodes)]

    pairs = (np.arange(5000), np.arange(5000) % 3000)
    sampled = model_geometry(Encoder(), pairs, 3000, max_points=256, seed=3)
    assert len(asked["user"]) == 256 and len(asked["item"]) <= 512
    full = EmbeddingScorer(tables["user"], tables["item"])
    again = model_geometry(full, pairs, 3000, max_points=256, seed=3)
    assert sampled == again  # the same sample whichever way the model gives its rows
    everything = alignment(tables["user"], tables["item"][torch.from_numpy(pairs[1])])
    assert abs(sampled.alignment - everything) < 0.15  # a sample of a mean near 2
