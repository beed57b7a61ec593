"""Item text: the title, optionally joined with categories, brand and description, capped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from galrec.data.raw import ItemRecord

KNOWN_FIELDS = ("title", "categories", "brand", "description")


@dataclass(frozen=True)
class TextOptions:
    """Which record fields make an item's text, how they are joined and how long it may be.

    ``fallback`` is used for items without any text; ``{id}`` becomes the raw item id.
    """

    fields: tuple[str, ...] = ("title",)
    max_chars: int = 256
    separator: str = ". "
    fallback: str = "Item {id} (no title)"

    def __post_init__(self) -> None:
        unknown = [name for name in self.fields if name not in KNOWN_FIELDS]
        if unknown or not self.fields:
            raise ValueError(
                f"text fields must be a non-empty subset of {', '.join(KNOWN_FIELDS)}; "
                f"got {', '.join(self.fields) or 'nothing'}"
            )
        if self.max_chars < 8:
            raise ValueError(f"max_chars must be at least 8, got {self.max_chars}")


def record_text(record: ItemRecord, options: TextOptions) -> str | None:
    """The joined, capped text of one record, or ``None`` if every chosen field is empty."""
    parts = []
    for name in options.fields:
        if name == "categories":
            value = ", ".join(record.categories) if record.categories else None
        else:
            value = getattr(record, name)
        value = value.rstrip(" .") if value else None
        if value:
            parts.append(value)
    if not parts:
        return None
    return cap_text(options.separator.join(parts), options.max_chars)


def cap_text(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars`` characters, at a word boundary where there is one."""
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    if space > max_chars // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:") + "…"


def build_item_texts(
    item_ids: Sequence[str], records: Mapping[str, ItemRecord], options: TextOptions
) -> tuple[list[str], int]:
    """Texts in ``item_ids`` order and how many items fell back for lack of text."""
    texts = []
    missing = 0
    for raw_id in item_ids:
        record = records.get(raw_id)
        text = record_text(record, options) if record is not None else None
        if text is None:
            missing += 1
            text = options.fallback.format(id=raw_id)
        texts.append(text)
    return texts, missing
