"""Users' interaction histories in time order, and which interactions a history may show.

One rule for every model that reads a history (SASRec's input sequence, GAL-Rec's history
prompts): the interaction being evaluated never appears in any input. Scoring the validation
split, a history holds the user's training interactions only. Scoring the test split, it also
holds the validation interaction when ``valid_in_test`` is true (:data:`VALID_IN_TEST_HISTORY`,
RecBole's sequential protocol and the default of every galrec model), so that a sequential model
sees the user's latest known interaction. Models that read no history (MF, LightGCN,
popularity) are trained on the training split alone either way.

Order: by timestamp, ties by the row order of the prepared split (the order the leave-one-out
split used), so the last training item is the one right before the validation item.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from galrec.data.prepared import Interactions

#: The protocol switch: the validation interaction is part of the history when testing.
VALID_IN_TEST_HISTORY = True

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Histories:
    """Each user's items oldest first, in CSR form: ``items[indptr[u]:indptr[u + 1]]``."""

    indptr: np.ndarray  # int64 [num_users + 1]
    items: np.ndarray  # int64 [total]

    @property
    def num_users(self) -> int:
        return len(self.indptr) - 1

    def lengths(self) -> np.ndarray:
        """Items per user, int64 [num_users]."""
        return np.diff(self.indptr)

    def of(self, user: int) -> np.ndarray:
        """The items of ``user``, oldest first."""
        return self.items[self.indptr[user] : self.indptr[user + 1]]

    def recent(
        self, users: np.ndarray, k: int, cut: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` items before position ``cut`` (default: the end) of each user's history,
        most recent first, as ``(offsets int64 [len(users) + 1], items int64)``.

        ``cut[j]`` counts from the start of user ``users[j]``'s history: the items at
        positions ``max(0, cut - k) .. cut - 1`` are returned, so nothing at or after ``cut``.
        """
        users = np.asarray(users, dtype=np.int64)
        starts = self.indptr[users]
        ends = self.indptr[users + 1] if cut is None else starts + np.asarray(cut, np.int64)
        if np.any(ends > self.indptr[users + 1]) or np.any(ends < starts):
            raise ValueError("cut is outside a user's history")
        counts = np.minimum(ends - starts, k)
        offsets = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        row = np.repeat(np.arange(len(users)), counts)
        within = np.arange(int(offsets[-1])) - offsets[row]
        return offsets, self.items[ends[row] - 1 - within]


def _time_order(
    users: np.ndarray, timestamps: np.ndarray, num_users: int
) -> tuple[np.ndarray, np.ndarray]:
    """The rows grouped by user, each user's oldest first (ties by row order), and the CSR
    ``indptr`` of those groups."""
    order = np.lexsort((np.arange(len(users)), timestamps, users))
    counts = np.bincount(users, minlength=num_users)
    indptr = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return order, indptr


def _grouped(
    users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, num_users: int
) -> Histories:
    order, indptr = _time_order(users, timestamps, num_users)
    return Histories(indptr, np.ascontiguousarray(items[order], dtype=np.int64))


def histories(
    dataset: Any, split: str = "train", valid_in_test: bool = VALID_IN_TEST_HISTORY
) -> Histories:
    """The input histories for scoring ``split``: "train" and "valid" give the training
    interactions; "test" adds the validation interaction when ``valid_in_test``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    parts = [dataset.train]
    if split == "test" and valid_in_test:
        parts.append(dataset.valid)
    users = np.concatenate([np.asarray(p.users, dtype=np.int64) for p in parts])
    items = np.concatenate([np.asarray(p.items, dtype=np.int64) for p in parts])
    # Valid rows come after every training row of their user: order them last among ties.
    stamps = np.concatenate([np.asarray(p.timestamps, dtype=np.int64) for p in parts])
    return _grouped(users, items, stamps, int(dataset.num_users))


def without_latest(dataset: Any, count: int) -> Any:
    """``dataset`` with each user's latest ``count`` training interactions (time order, as
    :func:`histories` orders them) taken out of the training split, keeping at least one per
    user; validation and test are unchanged.

    What ``model.prior_holdout`` fits the score prior and the CF features on, so that the
    language model's L0 targets (those latest interactions) are ones the prior never trained
    on: against a prior that memorised them, a residual has nothing left to learn.
    """
    if count < 0:
        raise ValueError(f"count must be 0 or more, got {count}")
    train = dataset.train
    if count == 0 or len(train) == 0:
        return dataset
    users = np.asarray(train.users, dtype=np.int64)
    order, indptr = _time_order(users, train.timestamps, int(dataset.num_users))
    sorted_users = users[order]
    ends, lengths = indptr[sorted_users + 1], np.diff(indptr)[sorted_users]
    from_end = ends - 1 - np.arange(len(users))  # 0: the user's latest interaction
    drop = (from_end < count) & (from_end < lengths - 1)
    keep = np.sort(order[~drop])  # the split's own row order
    trimmed = Interactions(users[keep], np.asarray(train.items)[keep], train.timestamps[keep])
    held_out = copy.copy(dataset)
    held_out.train = trimmed
    return held_out
