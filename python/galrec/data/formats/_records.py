"""Turn item-file blocks into :class:`ItemRecord` objects for the items in the interactions."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from galrec.data.raw import ItemRecord

TEXT_FIELDS = ("title", "categories", "brand", "description")
"""The item text fields galrec knows; a loader maps its source columns onto them."""


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def collect_item_records(
    blocks: Iterable[Mapping[str, Any]],
    id_column: str,
    columns: Mapping[str, str],
    wanted: Collection[str],
    split_categories: Callable[[str], list[str]] | None = None,
) -> dict[str, ItemRecord]:
    """Records of the items in ``wanted``; ``columns`` maps text field -> source column.

    The first row of an item wins when the file lists it twice. Category strings are split by
    ``split_categories`` (kept whole without it).
    """
    records: dict[str, ItemRecord] = {}
    for block in blocks:
        ids = _as_list(block[id_column])
        values = {field: _as_list(block[column]) for field, column in columns.items()}
        for row, raw_id in enumerate(ids):
            raw_id = str(raw_id)
            if raw_id not in wanted or raw_id in records:
                continue
            record = ItemRecord(
                title=_clean(values["title"][row]) if "title" in values else None,
                brand=_clean(values["brand"][row]) if "brand" in values else None,
                description=(
                    _clean(values["description"][row]) if "description" in values else None
                ),
            )
            if "categories" in values:
                category = _clean(values["categories"][row])
                if category:
                    record.categories = (
                        split_categories(category) if split_categories else [category]
                    )
            records[raw_id] = record
    return records


def _as_list(column: Any) -> list[Any]:
    return column.to_pylist() if hasattr(column, "to_pylist") else list(column)
