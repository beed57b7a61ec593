"""Alignment and uniformity of user/item representations (Wang & Isola, ICML 2020).

On L2-normalised representations ``f``:
``alignment = E_(u,i)~positives ||f(u) - f(i)||^2`` (lower: interacting pairs are closer) and
``uniformity = log E_(x,y) exp(-t ||f(x) - f(y)||^2)`` with ``t = 2`` (lower: the points spread
over the sphere), computed within users and within items on a random sample of each. This is the
analysis the GAL-Rec paper (and DirectAU) use to show what graph-aware training does to the space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def model_geometry(
    model: Any,
    pairs: tuple[np.ndarray, np.ndarray],
    num_items: int,
    *,
    max_points: int = 2048,
    seed: int = 0,
) -> AlignmentUniformity:
    """Alignment over at most ``max_points`` of the interacting ``pairs`` (users, items) and the
    uniformity of their users and of ``max_points`` random items, drawn with ``seed``, for a
    model (galrec.evaluation.evaluate.EmbeddingModel). Sampled so that a model that must encode a
    prompt per node (a language model) encodes a few thousand, not every user and item. A model with
    ``representations_of(side, nodes)`` is asked for just those nodes; any other gives its full
    tables.

    With one held-out pair per user (leave-one-out), the sampled pairs' users are a uniform
    sample of the users, so uniformity is measured on the same kind of sample as before.
    """
    rng = np.random.default_rng(seed)
    users = np.asarray(pairs[0], dtype=np.int64)
    items = np.asarray(pairs[1], dtype=np.int64)
    if len(users) > max_points:
        keep = np.sort(rng.choice(len(users), max_points, replace=False))
        users, items = users[keep], items[keep]
    spread = rng.choice(num_items, min(num_items, max_points), replace=False)
    user_nodes, user_rows = np.unique(users, return_inverse=True)
    item_nodes, item_rows = np.unique(np.concatenate([items, spread]), return_inverse=True)
    pick = getattr(model, "representations_of", None)
    if pick is not None:
        user_z, item_z = pick("user", user_nodes), pick("item", item_nodes)
    else:
        user_z = model.user_embeddings()[torch.from_numpy(user_nodes)]
        item_z = model.item_embeddings()[torch.from_numpy(item_nodes)]
    user_z, item_z = user_z.detach().float().cpu(), item_z.detach().float().cpu()
    paired_items = torch.from_numpy(item_rows[: len(items)])
    return AlignmentUniformity(
        alignment=alignment(user_z[torch.from_numpy(user_rows)], item_z[paired_items]),
        user_uniformity=uniformity(user_z),
        item_uniformity=uniformity(item_z[torch.from_numpy(item_rows[len(items) :])]),
    )
