"""RecBole atomic files: ``NAME.inter`` (+ ``.item``, ``.user``) with ``name:type`` headers."""

from __future__ import annotations

from pathlib import Path

from galrec.data.errors import DataFormatError
from galrec.data.formats._delimited import Dialect, Kind, read_delimited, read_header
from galrec.data.formats._io import ProgressFn, require_file
from galrec.data.formats._records import collect_item_records
from galrec.data.raw import InteractionBuilder, RawDataset

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")

# Source columns tried, in order, for each galrec field.
USER_COLUMNS = ("user_id",)
ITEM_COLUMNS = ("item_id",)
RATING_COLUMNS = ("rating",)
TIME_COLUMNS = ("timestamp",)
ITEM_TEXT_COLUMNS = {
    "title": ("title", "movie_title", "name", "item_name"),
    "categories": ("categories", "class", "genre", "genres", "category"),
    "brand": ("brand",),
    "description": ("description",),
}


def find_inter_file(path: Path) -> Path:
    """The ``.inter`` file given itself or its directory (which must hold exactly one)."""
    if path.is_dir():
        found = sorted(path.glob("*.inter"))
        if len(found) != 1:
            raise DataFormatError(
                path, None, None, f"expected one .inter file in the directory, found {len(found)}"
            )
        return found[0]
    if path.suffix != ".inter":
        raise DataFormatError(path, None, None, "a RecBole interaction file must end in .inter")
    return require_file(path)


def atomic_header(path: Path) -> tuple[str, ...]:
    """Column names of an atomic file, with their ``:type`` suffixes checked and removed."""
    names = []
    for column in read_header(path, "\t", quoted=False):
        name, sep, kind = column.rpartition(":")
        if not sep or kind not in FIELD_TYPES:
            raise DataFormatError(
                path, 1, column, f"header must be name:type with type in {', '.join(FIELD_TYPES)}"
            )
        names.append(name)
    return tuple(names)


def _first_present(names: tuple[str, ...], candidates: tuple[str, ...]) -> str | None:
    return next((name for name in candidates if name in names), None)


def load_recbole(path: Path, progress: ProgressFn | None = None) -> RawDataset:
    """Load a RecBole dataset from its directory or its ``.inter`` file."""
    inter = find_inter_file(Path(path))
    stem = inter.with_suffix("")
    columns = atomic_header(inter)
    user = _first_present(columns, USER_COLUMNS) or USER_COLUMNS[0]
    item = _first_present(columns, ITEM_COLUMNS) or ITEM_COLUMNS[0]
    rating = _first_present(columns, RATING_COLUMNS)
    time = _first_present(columns, TIME_COLUMNS)
    fields = {user: Kind.ID, item: Kind.ID}
    if rating:
        fields[rating] = Kind.NUMBER
    if time:
        fields[time] = Kind.TIME
    dialect = Dialect(column_names=columns, delimiter="\t", quoted=False)
    builder = InteractionBuilder()
    for block in read_delimited(inter, dialect, fields, progress):
        builder.add(
            block[user],
            block[item],
            block[time] if time else None,
            block[rating] if rating else None,
        )
    sources = [inter]
    items = {}
    item_file = stem.with_suffix(".item")
    if item_file.exists():  # a FIFO or directory here is refused when read, not skipped
        sources.append(item_file)
        item_columns = atomic_header(item_file)
        item_id = _first_present(item_columns, ITEM_COLUMNS) or ITEM_COLUMNS[0]
        text_columns = {
            field: found
            for field, candidates in ITEM_TEXT_COLUMNS.items()
            if (found := _first_present(item_columns, candidates))
        }
        item_dialect = Dialect(column_names=item_columns, delimiter="\t", quoted=False)
        blocks = read_delimited(
            item_file,
            item_dialect,
            {item_id: Kind.ID, **dict.fromkeys(text_columns.values(), Kind.TEXT)},
            progress,
        )
        items = collect_item_records(blocks, item_id, text_columns, builder.items.id_set())
    user_texts = None
    user_file = stem.with_suffix(".user")
    if user_file.exists():
        sources.append(user_file)
        user_texts = _user_texts(user_file, builder, progress)
    return builder.build(
        stem.name, sources, items, has_timestamps=time is not None, user_texts=user_texts
    )


def _user_texts(
    path: Path, builder: InteractionBuilder, progress: ProgressFn | None
) -> dict[str, str]:
    """A short text per user from the ``.user`` columns: ``age 24; gender M; ...``."""
    columns = atomic_header(path)
    user = _first_present(columns, USER_COLUMNS) or USER_COLUMNS[0]
    others = [name for name in columns if name != user]
    dialect = Dialect(column_names=columns, delimiter="\t", quoted=False)
    texts: dict[str, str] = {}
    known = builder.users.id_set()
    fields = {user: Kind.ID, **dict.fromkeys(others, Kind.TEXT)}
    for block in read_delimited(path, dialect, fields, progress):
        ids = block[user].to_pylist()
        values = {name: block[name].to_pylist() for name in others}
        for row, raw_id in enumerate(ids):
            if raw_id in known and raw_id not in texts:
                texts[raw_id] = "; ".join(
                    f"{name} {values[name][row]}" for name in others if values[name][row]
                )
    return texts
