"""Yelp Open Dataset: ``review.json`` (user, business, stars, date) and ``business.json``
(name and comma-separated categories become the item text)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from galrec.data.errors import DataFormatError
from galrec.data.formats._delimited import Kind
from galrec.data.formats._io import ProgressFn, iter_lines
from galrec.data.formats._jsonl import iter_wanted_objects, parse_object, read_json_columns
from galrec.data.raw import InteractionBuilder, ItemRecord, RawDataset

REVIEW_FIELDS = {"user_id": Kind.ID, "business_id": Kind.ID, "stars": Kind.NUMBER, "date": Kind.ID}
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
REVIEW_NAMES = ("yelp_academic_dataset_review.json", "review.json")
BUSINESS_NAMES = ("yelp_academic_dataset_business.json", "business.json")


def _find(directory: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.exists():  # a FIFO or directory here is refused when read
                return candidate
    return None


def load_yelp(
    reviews: Path, businesses: Path | None = None, *, progress: ProgressFn | None = None
) -> RawDataset:
    """Load Yelp reviews from the review file or its directory (business file found beside it)."""
    reviews = Path(reviews)
    if reviews.is_dir():
        directory = reviews
        found = _find(directory, REVIEW_NAMES)
        if found is None:
            raise DataFormatError(directory, None, None, "no review.json in the directory")
        reviews = found
        businesses = businesses or _find(directory, BUSINESS_NAMES)
    builder = InteractionBuilder()
    for block in read_json_columns(reviews, REVIEW_FIELDS, progress):
        seconds = _seconds(reviews, block["date"])
        builder.add(block["user_id"], block["business_id"], seconds, block["stars"])
    sources = [reviews]
    items: dict[str, ItemRecord] = {}
    if businesses is not None:
        businesses = Path(businesses)
        sources.append(businesses)
        wanted = builder.items.id_set()
        for raw_id, row in iter_wanted_objects(businesses, ("business_id",), wanted, progress):
            categories = row.get("categories") or ""
            items.setdefault(
                raw_id,
                ItemRecord(
                    title=(row.get("name") or "").strip() or None,
                    categories=[part.strip() for part in categories.split(",") if part.strip()],
                ),
            )
    return builder.build("yelp", sources, items)


def _seconds(path: Path, dates: object) -> np.ndarray:
    """Unix seconds of Yelp's ``YYYY-MM-DD HH:MM:SS`` dates (UTC); a bad date names its line."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        parsed = pc.strptime(dates, format=DATE_FORMAT, unit="s")
    except pa.ArrowInvalid:
        raise _bad_date(path) from None
    return pc.cast(parsed, pa.int64()).to_numpy(zero_copy_only=False)


def _bad_date(path: Path) -> DataFormatError:
    for number, text in iter_lines(path):
        if not text.strip():
            continue
        value = parse_object(path, number, text, loose=False).get("date", "")
        try:
            datetime.strptime(value, DATE_FORMAT).replace(tzinfo=timezone.utc)
        except (TypeError, ValueError):
            return DataFormatError(path, number, "date", f"expected {DATE_FORMAT}, found {value!r}")
    return DataFormatError(path, None, "date", "a date could not be parsed")
