"""What a loader hands over: interactions with raw ids encoded to codes, plus item metadata."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa


class IdColumn:
    """Collects raw id blocks and encodes them all at once, in order of first appearance.

    Each block is dictionary-encoded when added; :meth:`encode` unites the block dictionaries
    and maps them with pyarrow's hash kernels, so Python never loops over rows or ids.
    """

    def __init__(self) -> None:
        self._blocks: list[pa.DictionaryArray] = []
        self._encoded: tuple[np.ndarray, list[str]] | None = None

    def add(self, values: pa.Array | Iterable[str]) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if self._encoded is not None:
            raise RuntimeError("ids were already encoded; no more blocks can be added")
        column = values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())
        self._blocks.append(pc.dictionary_encode(column))

    def encode(self) -> tuple[np.ndarray, list[str]]:
        """Codes of every added id (int64, in input order) and the raw id of each code."""
        if self._encoded is None:
            import pyarrow as pa
            import pyarrow.compute as pc

            if not self._blocks:
                self._encoded = (np.zeros(0, dtype=np.int64), [])
                return self._encoded
            ids = pc.unique(pa.concat_arrays([block.dictionary for block in self._blocks]))
            codes = [
                pc.index_in(block.dictionary, value_set=ids)
                .to_numpy(zero_copy_only=False)
                .astype(np.int64)[block.indices.to_numpy(zero_copy_only=False)]
                for block in self._blocks
            ]
            self._encoded = (np.concatenate(codes), ids.to_pylist())
            self._blocks = []
        return self._encoded

    def id_set(self) -> set[str]:
        """The distinct raw ids (encodes first)."""
        return set(self.encode()[1])


@dataclass(slots=True)
class ItemRecord:
    """Text fields of one item as found in the source (any may be missing)."""

    title: str | None = None
    categories: list[str] = field(default_factory=list)
    brand: str | None = None
    description: str | None = None


@dataclass
class RawDataset:
    """Interactions as codes into ``user_ids``/``item_ids``, before filtering and splitting.

    ``timestamps`` are int64 (unix seconds, or positions where the source has no clock);
    ``has_timestamps`` is False when they are only the row order of the file. ``columns``
    names the source column of each role (user, item, timestamp, rating) where the loader
    chose among a table's columns, so the choice can be reported.
    """

    name: str
    user_codes: np.ndarray
    item_codes: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray | None
    user_ids: list[str]
    item_ids: list[str]
    items: dict[str, ItemRecord]
    sources: list[Path]
    has_timestamps: bool = True
    user_texts: dict[str, str] | None = None
    columns: dict[str, str] = field(default_factory=dict)

    @property
    def num_interactions(self) -> int:
        return len(self.user_codes)


class InteractionBuilder:
    """Collects interaction blocks from a streaming reader into one :class:`RawDataset`."""

    def __init__(self) -> None:
        self.users = IdColumn()
        self.items = IdColumn()
        self._time_parts: list[np.ndarray] = []
        self._rating_parts: list[np.ndarray] = []
        self._rows = 0

    def add(
        self,
        users: pa.Array | Sequence[str],
        items: pa.Array | Sequence[str],
        timestamps: np.ndarray | None,
        ratings: np.ndarray | None,
    ) -> None:
        """Append one block; without timestamps the row order stands in for time."""
        self.users.add(users)
        self.items.add(items)
        count = len(users)
        if timestamps is None:
            timestamps = np.arange(self._rows, self._rows + count, dtype=np.int64)
        self._time_parts.append(np.floor(np.asarray(timestamps)).astype(np.int64))
        if ratings is not None:
            self._rating_parts.append(np.asarray(ratings, dtype=np.float64))
        self._rows += count

    def build(
        self,
        name: str,
        sources: list[Path],
        items: dict[str, ItemRecord],
        *,
        has_timestamps: bool = True,
        user_texts: dict[str, str] | None = None,
        columns: dict[str, str] | None = None,
    ) -> RawDataset:
        """The collected interactions; ratings are kept only if every block had them."""

        def joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

        ratings = (
            joined(self._rating_parts, np.float64)
            if self._rating_parts and len(self._rating_parts) == len(self._time_parts)
            else None
        )
        user_codes, user_ids = self.users.encode()
        item_codes, item_ids = self.items.encode()
        return RawDataset(
            name=name,
            user_codes=user_codes,
            item_codes=item_codes,
            timestamps=joined(self._time_parts, np.int64),
            ratings=ratings,
            user_ids=user_ids,
            item_ids=item_ids,
            items=items,
            sources=sources,
            has_timestamps=has_timestamps,
            user_texts=user_texts,
            columns=dict(columns or {}),
        )
