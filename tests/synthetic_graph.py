"""A small user-item graph with community structure, split leave-one-out, for baseline tests.

Each user belongs to one of ``communities`` groups and draws 90% of its items from its group's
items (with a popularity skew), so a collaborative model can beat global popularity by a margin.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Pairs:
    users: np.ndarray
    items: np.ndarray


@dataclass
class SyntheticSplits:
    num_users: int
    num_items: int
    train: Pairs
    valid: Pairs
    test: Pairs


def community_graph(
    num_users: int = 300,
    num_items: int = 120,
    communities: int = 6,
    per_user: int = 12,
    seed: int = 0,
) -> SyntheticSplits:
    rng = np.random.default_rng(seed)
    user_group = rng.integers(communities, size=num_users)
    item_group = np.arange(num_items) % communities
    popularity = 1.0 / np.arange(1, num_items + 1) ** 0.6
    rng.shuffle(popularity)
    users, items = [], []
    for user in range(num_users):
        in_group = item_group == user_group[user]
        weights = popularity * np.where(in_group, 9.0 * (~in_group).sum() / in_group.sum(), 1.0)
        chosen = rng.choice(num_items, size=per_user, replace=False, p=weights / weights.sum())
        users.append(np.full(per_user, user))
        items.append(chosen)  # random order = time order: the last two are held out
    u, i = np.concatenate(users), np.concatenate(items)
    position = np.tile(np.arange(per_user), num_users)
    train, valid, test = position < per_user - 2, position == per_user - 2, position == per_user - 1
    return SyntheticSplits(
        num_users=num_users,
        num_items=num_items,
        train=Pairs(u[train], i[train]),
        valid=Pairs(u[valid], i[valid]),
        test=Pairs(u[test], i[test]),
    )


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: on a busy 2-core machine small ops get much slower with two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
