"""Alignment and uniformity of user/item representations (Wang & Isola, ICML 2020).

On L2-normalised representations ``f``:
``alignment = E_(u,i)~positives ||f(u) - f(i)||^2`` (lower: interacting pairs are closer) and
``uniformity = log E_(x,y) exp(-t ||f(x) - f(y)||^2)`` with ``t = 2`` (lower: the points spread
over the sphere), computed within users and within items on a random sample of each. This is the
analysis the GAL-Rec paper (and DirectAU) use to show what graph-aware training does to the space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def alignment(user_z: torch.Tensor, item_z: torch.Tensor) -> float:
    """Mean squared distance of row-paired, normalised user and item representations."""
    user_z, item_z = F.normalize(user_z.float(), dim=1), F.normalize(item_z.float(), dim=1)
    return float((user_z - item_z).pow(2).sum(1).mean())


def uniformity(z: torch.Tensor, t: float = 2.0) -> float:
    """``log`` of the mean Gaussian potential over all distinct pairs of normalised rows."""
    if len(z) < 2:
        raise ValueError("uniformity needs at least two points")
    z = F.normalize(z.float(), dim=1)
    squared = torch.pdist(z).pow(2)
    return float(torch.logsumexp(-t * squared, 0) - np.log(len(squared)))


@dataclass(frozen=True)
class AlignmentUniformity:
    alignment: float
    user_uniformity: float
    item_uniformity: float

    @property
    def uniformity(self) -> float:
        """The mean of the user and item uniformity, as DirectAU reports it."""
        return (self.user_uniformity + self.item_uniformity) / 2


def alignment_uniformity(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    pairs: tuple[np.ndarray, np.ndarray],
    *,
    max_points: int = 2048,
    seed: int = 0,
) -> AlignmentUniformity:
    """Both measures for a model's tables over the interacting ``pairs`` (users, items).

    Uniformity uses at most ``max_points`` random users and items (pdist is quadratic).
    """
    rng = np.random.default_rng(seed)
    users = torch.as_tensor(np.asarray(pairs[0], dtype=np.int64))
    items = torch.as_tensor(np.asarray(pairs[1], dtype=np.int64))
    user_emb, item_emb = user_emb.detach().cpu(), item_emb.detach().cpu()

    def sample(table: torch.Tensor) -> torch.Tensor:
        if len(table) <= max_points:
            return table
        return table[torch.from_numpy(rng.choice(len(table), max_points, replace=False))]

    return AlignmentUniformity(
        alignment=alignment(user_emb[users], item_emb[items]),
        user_uniformity=uniformity(sample(user_emb)),
        item_uniformity=uniformity(sample(item_emb)),
    )
