"""A power-law bipartite edge generator: random distinct (user, item) edges with Zipf
item popularity, for the benchmarks, tests and ``galrec graph demo``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def _item_degrees(num_users: int, num_items: int, num_edges: int, exponent: float) -> np.ndarray:
    """Zipf shares of ``num_edges`` by popularity rank, capped at ``num_users`` (the excess of
    a capped item goes to the uncapped ones in proportion), rounded to sum to ``num_edges``."""
    share = np.arange(1, num_items + 1, dtype=np.float64) ** -exponent
    target = np.zeros(num_items)
    capped = np.zeros(num_items, dtype=bool)
    while True:
        free = ~capped
        target[free] = (num_edges - num_users * capped.sum()) * share[free] / share[free].sum()
        over = free & (target > num_users)
        if not over.any():
            break
        capped |= over
        target[capped] = num_users
    degrees = np.floor(target).astype(np.int64)
    missing = num_edges - int(degrees.sum())
    room = np.flatnonzero(degrees < num_users)
    order = room[np.argsort(-(target[room] - degrees[room]), kind="stable")]
    degrees[order[:missing]] += 1
    return degrees


def generate_power_law(
    num_users: int,
    num_items: int,
    num_edges: int,
    *,
    zipf_exponent: float = 1.0,
    seed: int = 0,
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    """Random distinct (user, item) edges with Zipf item popularity, in random order.

    The item of popularity rank ``r`` (1-based) gets about ``num_edges * r ** -zipf_exponent
    / H`` edges, at most ``num_users`` (a saturated item's excess spreads over the others in
    proportion). Its users are a stratified random subset: one uniform pick from each of
    ``degree`` equal slices of the user range, which makes them distinct without a sort.
    User and item ids are then randomly permuted, so popularity is unrelated to id.
    """
    if num_users <= 0 or num_items <= 0 or num_edges < 0:
        raise ValueError("num_users and num_items must be positive and num_edges non-negative")
    if num_edges > num_users * num_items:
        raise ValueError(
            f"num_edges={num_edges} exceeds the {num_users * num_items} possible distinct edges"
        )
    if zipf_exponent < 0:
        raise ValueError(f"zipf_exponent must be non-negative, got {zipf_exponent}")
    rng = np.random.default_rng(seed)
    degrees = _item_degrees(num_users, num_items, num_edges, zipf_exponent)
    ranks = np.repeat(np.arange(num_items, dtype=np.int64), degrees)
    starts = np.cumsum(degrees) - degrees
    slot = np.arange(num_edges, dtype=np.int64) - starts[ranks]
    degree = degrees[ranks]
    low = slot * num_users // degree
    high = (slot + 1) * num_users // degree
    picks = low + (rng.random(num_edges) * (high - low)).astype(np.int64)
    order = rng.permutation(num_edges)
    user_of = rng.permutation(num_users).astype(np.uint32)
    item_of = rng.permutation(num_items).astype(np.uint32)
    return user_of[picks[order]], item_of[ranks[order]]
