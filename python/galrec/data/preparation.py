"""From a loaded :class:`RawDataset` to a :class:`PreparedDataset`.

Steps, in order: implicit feedback (a rating threshold), duplicate removal, iterative k-core
filtering, contiguous id remapping (maps kept), the split, the item texts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from galrec.data.errors import EmptyDatasetError
from galrec.data.prepared import Interactions, PreparedDataset, sha256_of
from galrec.data.raw import RawDataset
from galrec.data.splits import TEST, TRAIN, VALID, SplitMethod, SplitOptions, split_labels
from galrec.data.text import TextOptions, build_item_texts


class Duplicates(str, Enum):
    """Which interaction of a repeated (user, item) pair is kept."""

    FIRST = "first"
    LAST = "last"


@dataclass(frozen=True)
class PrepareOptions:
    """Everything that turns raw interactions into a prepared dataset.

    ``min_rating``: keep interactions rated at least this (``None`` keeps all: implicit data).
    ``user_core``/``item_core``: the k of the iterative k-core filter on each side (0 or 1: off).
    """

    min_rating: float | None = None
    duplicates: Duplicates = Duplicates.FIRST
    user_core: int = 5
    item_core: int = 5
    split: SplitOptions = field(default_factory=SplitOptions)
    text: TextOptions = field(default_factory=TextOptions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "duplicates", Duplicates(self.duplicates))
        if self.user_core < 0 or self.item_core < 0:
            raise ValueError("k-core thresholds must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready options for the manifest."""
        return json_ready(asdict(self))


def json_ready(value: Any) -> Any:
    """Enums to their values and tuples to lists, recursively."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    return value


def rating_mask(ratings: np.ndarray | None, min_rating: float | None) -> np.ndarray | None:
    """Which interactions count as positive feedback (``None``: all of them)."""
    if min_rating is None:
        return None
    if ratings is None:
        raise ValueError("min_rating was given but the source has no ratings")
    return ratings >= min_rating


def deduplicate(
    users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, keep: Duplicates
) -> np.ndarray:
    """Indices of the kept interactions (in input order): one per (user, item) pair, the
    earliest (``FIRST``) or latest (``LAST``) in time, ties broken by input order."""
    if len(users) == 0:
        return np.zeros(0, dtype=np.int64)
    position = np.arange(len(users))
    direction = 1 if keep is Duplicates.FIRST else -1
    order = np.lexsort((direction * position, direction * timestamps, items, users))
    pair_users, pair_items = users[order], items[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (pair_users[1:] != pair_users[:-1]) | (pair_items[1:] != pair_items[:-1])
    return np.sort(order[first])


def k_core(
    users: np.ndarray, items: np.ndarray, user_core: int, item_core: int
) -> tuple[np.ndarray, int]:
    """Mask of the interactions in the (user_core, item_core)-core and the rounds it took.

    Repeatedly drops interactions of users with fewer than ``user_core`` and items with fewer
    than ``item_core`` interactions until neither changes (the fixed point is unique).
    """
    keep = np.ones(len(users), dtype=bool)
    num_users = int(users.max()) + 1 if len(users) else 0
    num_items = int(items.max()) + 1 if len(items) else 0
    rounds = 0
    while True:
        rounds += 1
        user_degree = np.bincount(users[keep], minlength=num_users)
        item_degree = np.bincount(items[keep], minlength=num_items)
        updated = keep & (user_degree[users] >= user_core) & (item_degree[items] >= item_core)
        if np.array_equal(updated, keep):
            return keep, rounds
        keep = updated


def split_order(has_timestamps: bool, method: SplitMethod) -> str:
    """What orders the split, for the manifest: "time", "row order" (no time column: the
    file's order stands in for time) or "random" (the ratio split ignores time)."""
    if method is SplitMethod.RATIO:
        return "random"
    return "time" if has_timestamps else "row order"


def prepare(raw: RawDataset, options: PrepareOptions | None = None) -> PreparedDataset:
    """Filter, remap, split and attach texts; raises :class:`EmptyDatasetError` if nothing is
    left. ``info`` records the options, sources (with checksums) and a report of each step."""
    options = options or PrepareOptions()
    if options.split.method is SplitMethod.TEMPORAL and not raw.has_timestamps:
        raise ValueError(
            f"{', '.join(str(path) for path in raw.sources) or raw.name}: the temporal split "
            "needs timestamps and the data has none (no time column); name one with --time-col "
            "or choose --split loo or ratio"
        )
    report: dict[str, Any] = {
        "read": raw.num_interactions,
        "users_read": len(raw.user_ids),
        "items_read": len(raw.item_ids),
    }
    users, items, times = raw.user_codes, raw.item_codes, raw.timestamps

    positive = rating_mask(raw.ratings, options.min_rating)
    if positive is not None:
        users, items, times = users[positive], items[positive], times[positive]
    report["after_rating_filter"] = len(users)

    kept = deduplicate(users, items, times, options.duplicates)
    users, items, times = users[kept], items[kept], times[kept]
    report["after_deduplication"] = len(users)

    core, rounds = k_core(users, items, options.user_core, options.item_core)
    users, items, times = users[core], items[core], times[core]
    report["after_k_core"] = len(users)
    report["k_core_rounds"] = rounds
    if len(users) == 0:
        raise EmptyDatasetError(
            f"{', '.join(str(path) for path in raw.sources) or raw.name}: no interactions left "
            f"after filtering ({raw.num_interactions} read, {report['after_rating_filter']} after "
            f"min_rating={options.min_rating}, {report['after_deduplication']} after "
            f"deduplication, 0 after the {options.user_core}/{options.item_core}-core)"
        )

    user_codes, users = np.unique(users, return_inverse=True)
    item_codes, items = np.unique(items, return_inverse=True)
    user_ids = [raw.user_ids[code] for code in user_codes]
    item_ids = [raw.item_ids[code] for code in item_codes]

    labels = split_labels(users, times, options.split)
    item_texts, missing = build_item_texts(item_ids, raw.items, options.text)
    report["items_without_text"] = missing
    user_texts = None
    if raw.user_texts is not None:
        user_texts = [raw.user_texts.get(raw_id, "") for raw_id in user_ids]

    def part(label: int) -> Interactions:
        chosen = labels == label
        return Interactions(users[chosen], items[chosen], times[chosen])

    return PreparedDataset(
        name=raw.name,
        num_users=len(user_ids),
        num_items=len(item_ids),
        train=part(TRAIN),
        valid=part(VALID),
        test=part(TEST),
        item_texts=item_texts,
        user_ids=user_ids,
        item_ids=item_ids,
        user_texts=user_texts,
        info={
            "options": options.to_dict(),
            "sources": [
                {"path": str(path), "size": path.stat().st_size, "sha256": sha256_of(path)}
                for path in raw.sources
            ],
            "has_timestamps": raw.has_timestamps,
            "split_order": split_order(raw.has_timestamps, options.split.method),
            **({"columns": raw.columns} if raw.columns else {}),
            "report": report,
        },
    )


def dataset_name(name: str | None, output: Path) -> str:
    """``name``, or the output directory's name: one path component, since compare writes its
    report to ``runs/compare/NAME``."""
    chosen = output.resolve().name if name is None else name
    if chosen in ("", ".", "..") or "/" in chosen or "\\" in chosen:
        raise ValueError(f"--name must be one path component, got {chosen!r}")
    return chosen
