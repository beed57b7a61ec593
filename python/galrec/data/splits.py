"""Evaluation splits: leave-one-out in time order (default), global temporal, per-user ratio.

Each function labels every interaction TRAIN, VALID or TEST. Ties in time are broken by the
input order, and the random split is driven by a seed, so every split is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2


class SplitMethod(str, Enum):
    """The split strategies; the value is the name used in options and on the CLI."""

    LEAVE_ONE_OUT = "loo"
    TEMPORAL = "temporal"
    RATIO = "ratio"


@dataclass(frozen=True)
class SplitOptions:
    """``valid_ratio``/``test_ratio`` apply to the temporal and ratio splits only."""

    method: SplitMethod = SplitMethod.LEAVE_ONE_OUT
    valid_ratio: float = 0.1
    test_ratio: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", SplitMethod(self.method))
        if not (0 <= self.valid_ratio < 1 and 0 <= self.test_ratio < 1) or (
            self.valid_ratio + self.test_ratio >= 1
        ):
            raise ValueError(
                "valid_ratio and test_ratio must be in [0, 1) with a sum below 1, got "
                f"{self.valid_ratio} and {self.test_ratio}"
            )


def split_labels(users: np.ndarray, timestamps: np.ndarray, options: SplitOptions) -> np.ndarray:
    """Label each interaction TRAIN (0), VALID (1) or TEST (2) with the chosen method."""
    if options.method is SplitMethod.LEAVE_ONE_OUT:
        return leave_one_out(users, timestamps)
    if options.method is SplitMethod.TEMPORAL:
        return temporal_split(timestamps, options.valid_ratio, options.test_ratio)
    return ratio_split(users, options.valid_ratio, options.test_ratio, options.seed)


def _rank_from_end(users: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``order`` grouping users together: each row's position counted from its group's end,
    and the size of its group (both indexed like the input)."""
    sorted_users = users[order]
    counts = np.bincount(users, minlength=int(users.max()) + 1 if len(users) else 0)
    group_end = np.cumsum(counts)[sorted_users] - 1
    from_end = np.empty(len(users), dtype=np.int64)
    from_end[order] = group_end - np.arange(len(users))
    return from_end, counts[users]


def leave_one_out(users: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Per user: the last interaction is TEST, the one before VALID, the rest TRAIN.

    Users with two interactions give one to TEST; users with one keep it in TRAIN.
    """
    order = np.lexsort((np.arange(len(users)), timestamps, users))
    from_end, counts = _rank_from_end(users, order)
    labels = np.full(len(users), TRAIN, dtype=np.uint8)
    labels[(from_end == 0) & (counts >= 2)] = TEST
    labels[(from_end == 1) & (counts >= 3)] = VALID
    return labels


def temporal_split(timestamps: np.ndarray, valid_ratio: float, test_ratio: float) -> np.ndarray:
    """One global cut in time: the latest ``test_ratio`` TEST, the ``valid_ratio`` before VALID."""
    count = len(timestamps)
    order = np.lexsort((np.arange(count), timestamps))
    num_test = round(count * test_ratio)
    num_valid = round(count * valid_ratio)
    labels = np.full(count, TRAIN, dtype=np.uint8)
    labels[order[count - num_test - num_valid : count - num_test]] = VALID
    labels[order[count - num_test :]] = TEST
    return labels


def ratio_split(users: np.ndarray, valid_ratio: float, test_ratio: float, seed: int) -> np.ndarray:
    """Per user, a seeded random ``test_ratio``/``valid_ratio`` share (rounded) is held out.

    Every user keeps at least one TRAIN interaction.
    """
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(users)), users))
    from_end, counts = _rank_from_end(users, order)
    num_test = np.round(counts * test_ratio).astype(np.int64)
    num_valid = np.round(counts * valid_ratio).astype(np.int64)
    overflow = np.maximum(num_test + num_valid - (counts - 1), 0)
    reduce_valid = np.minimum(overflow, num_valid)
    num_valid -= reduce_valid
    num_test -= overflow - reduce_valid
    labels = np.full(len(users), TRAIN, dtype=np.uint8)
    labels[from_end < num_test + num_valid] = VALID
    labels[from_end < num_test] = TEST
    return labels
