"""Amazon review data, JSON lines (plain or gzip), in its 2014, 2018 and 2023 layouts.

Reviews: 2014/2018 ``reviewerID``, ``asin``, ``overall``, ``unixReviewTime`` (seconds);
2023 ``user_id``, ``parent_asin`` (or ``asin``), ``rating``, ``timestamp`` (milliseconds).
Metadata: ``title``; categories (2014 ``categories`` as nested lists, 2018 ``category``, 2023
``categories`` and ``main_category``); brand (``brand``, 2023 ``store``); ``description`` (a
string or a list of paragraphs). 2014 metadata is Python-literal "loose JSON"; both parse.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from galrec.data.errors import DataFormatError
from galrec.data.formats._delimited import Kind
from galrec.data.formats._io import ProgressFn
from galrec.data.formats._jsonl import first_object, iter_wanted_objects, read_json_columns
from galrec.data.raw import InteractionBuilder, ItemRecord, RawDataset

TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class ReviewLayout:
    """Field names of one review layout and the factor that turns its time into seconds."""

    name: str
    user: str
    item: str
    rating: str
    time: str
    seconds_per_unit: float


LAYOUT_2014_2018 = ReviewLayout("2014/2018", "reviewerID", "asin", "overall", "unixReviewTime", 1)
LAYOUT_2023 = ReviewLayout("2023", "user_id", "parent_asin", "rating", "timestamp", 1e-3)
LAYOUT_2023_ASIN = ReviewLayout("2023", "user_id", "asin", "rating", "timestamp", 1e-3)
META_ID_KEYS = ("parent_asin", "asin")


def review_layout(path: Path, use_parent_asin: bool = True) -> ReviewLayout:
    """Which layout a review file has, judged by its first line."""
    sample = first_object(path)
    if "reviewerID" in sample:
        return LAYOUT_2014_2018
    if "user_id" in sample:
        return LAYOUT_2023 if use_parent_asin and "parent_asin" in sample else LAYOUT_2023_ASIN
    raise DataFormatError(
        path, 1, None, "not an Amazon review file: no 'reviewerID' (2014/2018) or 'user_id' (2023)"
    )


def load_amazon(
    reviews: Path,
    metadata: Path | None = None,
    *,
    use_parent_asin: bool = True,
    progress: ProgressFn | None = None,
) -> RawDataset:
    """Load Amazon reviews (and item metadata, restricted to reviewed items)."""
    reviews = Path(reviews)
    layout = review_layout(reviews, use_parent_asin)
    fields = {
        layout.user: Kind.ID,
        layout.item: Kind.ID,
        layout.rating: Kind.NUMBER,
        layout.time: Kind.TIME,
    }
    builder = InteractionBuilder()
    for block in read_json_columns(reviews, fields, progress):
        seconds = np.floor(block[layout.time] * layout.seconds_per_unit)
        builder.add(block[layout.user], block[layout.item], seconds, block[layout.rating])
    sources = [reviews]
    items: dict[str, ItemRecord] = {}
    if metadata is not None:
        metadata = Path(metadata)
        sources.append(metadata)
        wanted = builder.items.id_set()
        for raw_id, row in iter_wanted_objects(metadata, META_ID_KEYS, wanted, progress):
            items.setdefault(raw_id, metadata_record(row))
    name = reviews.name.split(".")[0]
    return builder.build(name, sources, items)


def metadata_record(row: dict[str, Any]) -> ItemRecord:
    """Text fields of one metadata object, whatever its layout."""
    categories: list[str] = []
    for key in ("main_category", "categories", "category"):
        _flatten_into(row.get(key), categories)
    return ItemRecord(
        title=_text(row.get("title")),
        categories=categories,
        brand=_text(row.get("brand") or row.get("store")),
        description=_text(row.get("description")),
    )


def _text(value: Any) -> str | None:
    if isinstance(value, list):
        value = " ".join(str(part) for part in value if part)
    if not value or not isinstance(value, str | int | float):
        return None
    text = " ".join(TAG.sub(" ", html.unescape(str(value))).split())
    return text or None


def _flatten_into(value: Any, out: list[str]) -> None:
    """Append category names from a string, a list or nested lists, without repeats."""
    if isinstance(value, list):
        for part in value:
            _flatten_into(part, out)
        return
    text = _text(value)
    if text and text not in out:
        out.append(text)
