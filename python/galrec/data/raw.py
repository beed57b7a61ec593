"""What a loader hands over: interactions with raw ids encoded to codes, plus item metadata."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa


class IdVocabulary:
    """Gives each raw id a code in order of first appearance, chunk by chunk."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, raw_id: object) -> bool:
        return raw_id in self._codes

    def code(self, raw_id: str) -> int:
        """The code of ``raw_id``, assigning the next free one if it is new."""
        found = self._codes.get(raw_id)
        if found is None:
            found = len(self.ids)
            self._codes[raw_id] = found
            self.ids.append(raw_id)
        return found

    def encode(self, raw_ids: Iterable[str]) -> np.ndarray:
        """Codes of a sequence of raw ids."""
        return np.fromiter((self.code(raw) for raw in raw_ids), dtype=np.int64)

    def encode_arrow(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Codes of a pyarrow string column; Python touches each distinct value once."""
        import pyarrow as pa
        import pyarrow.compute as pc

        encoded = pc.dictionary_encode(column)
        chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
        parts = [np.zeros(0, dtype=np.int64)]
        for chunk in chunks:
            lookup = self.encode(chunk.dictionary.to_pylist())
            indices = chunk.indices.to_numpy(zero_copy_only=False)
            parts.append(lookup[indices] if len(lookup) else indices.astype(np.int64))
        return np.concatenate(parts)


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
    ``has_timestamps`` is False when they are only the row order of the file.
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

    @property
    def num_interactions(self) -> int:
        return len(self.user_codes)


class InteractionBuilder:
    """Collects interaction blocks from a streaming reader into one :class:`RawDataset`."""

    def __init__(self) -> None:
        self.users = IdVocabulary()
        self.items = IdVocabulary()
        self._user_parts: list[np.ndarray] = []
        self._item_parts: list[np.ndarray] = []
        self._time_parts: list[np.ndarray] = []
        self._rating_parts: list[np.ndarray] = []
        self._rows = 0

    def add(
        self,
        users: pa.Array | Iterable[str],
        items: pa.Array | Iterable[str],
        timestamps: np.ndarray | None,
        ratings: np.ndarray | None,
    ) -> None:
        """Append one block; without timestamps the row order stands in for time."""
        user_codes = self._encode(self.users, users)
        item_codes = self._encode(self.items, items)
        count = len(user_codes)
        if timestamps is None:
            timestamps = np.arange(self._rows, self._rows + count, dtype=np.int64)
        self._user_parts.append(user_codes)
        self._item_parts.append(item_codes)
        self._time_parts.append(np.floor(np.asarray(timestamps)).astype(np.int64))
        if ratings is not None:
            self._rating_parts.append(np.asarray(ratings, dtype=np.float64))
        self._rows += count

    @staticmethod
    def _encode(vocabulary: IdVocabulary, values: pa.Array | Iterable[str]) -> np.ndarray:
        if hasattr(values, "dictionary_encode"):
            return vocabulary.encode_arrow(values)  # type: ignore[arg-type]
        return vocabulary.encode(values)  # type: ignore[arg-type]

    def build(
        self,
        name: str,
        sources: list[Path],
        items: dict[str, ItemRecord],
        *,
        has_timestamps: bool = True,
        user_texts: dict[str, str] | None = None,
    ) -> RawDataset:
        """The collected interactions; ratings are kept only if every block had them."""

        def joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

        ratings = (
            joined(self._rating_parts, np.float64)
            if self._rating_parts and len(self._rating_parts) == len(self._user_parts)
            else None
        )
        return RawDataset(
            name=name,
            user_codes=joined(self._user_parts, np.int64),
            item_codes=joined(self._item_parts, np.int64),
            timestamps=joined(self._time_parts, np.int64),
            ratings=ratings,
            user_ids=self.users.ids,
            item_ids=self.items.ids,
            items=items,
            sources=sources,
            has_timestamps=has_timestamps,
            user_texts=user_texts,
        )
