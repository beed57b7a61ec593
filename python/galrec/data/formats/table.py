"""Generic interaction and item tables (CSV, TSV or Parquet) with a column mapping."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from galrec.data.errors import DataFormatError
from galrec.data.formats._delimited import (
    NUMERIC_KINDS,
    BadValue,
    Dialect,
    Kind,
    convert_column,
    read_delimited,
    read_header,
)
from galrec.data.formats._io import (
    READ_ERRORS,
    ProgressFn,
    iter_lines,
    read_error,
    require_file,
)
from galrec.data.formats._records import TEXT_FIELDS, collect_item_records
from galrec.data.raw import InteractionBuilder, RawDataset

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

PARQUET_SUFFIXES = (".parquet", ".pq")
TAB_SUFFIXES = (".tsv", ".tab")
NO_COLUMN = "none"
"""Given as the time (or rating) column: the table has none, and its row order stands in for
time. Without it a column named like a time column is used (see :data:`COLUMN_ALIASES`)."""

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("userid", "user", "uid", "reviewerid", "customerid", "visitorid"),
    "item": (
        "itemid",
        "item",
        "iid",
        "movieid",
        "productid",
        "asin",
        "parentasin",
        "businessid",
        "bookid",
        "trackid",
        "songid",
        "articleid",
    ),
    "timestamp": (
        "timestamp",
        "time",
        "ts",
        "datetime",
        "date",
        "unixtime",
        "unixreviewtime",
        "eventtime",
        "createdat",
    ),
    "rating": ("rating", "ratings", "score", "stars", "overall"),
}
"""Header names that fill a role whose column is not given, compared case-insensitively and
ignoring ``_``, ``-``, ``.`` and spaces: ``userId``, ``user_id`` and ``USER ID`` are all
``userid``. Two matches for one role are an error, never a guess."""

OPTION_OF_ROLE = {
    "user": "--user-col",
    "item": "--item-col",
    "timestamp": "--time-col",
    "rating": "--rating-col",
}
POSITIONAL_COLUMNS = {
    2: ("user", "item"),
    3: ("user", "item", "rating"),
    4: ("user", "item", "rating", "timestamp"),
}
"""Column names of a file without a header, by its number of fields (MovieLens ``u.data``)."""


@dataclass(frozen=True)
class TableColumns:
    """Which source columns hold the user, item, timestamp and rating of an interaction.

    ``None`` finds a column by its header name (:data:`COLUMN_ALIASES`); :data:`NO_COLUMN`
    says there is no timestamp (or rating) column. ``header=False`` reads a file whose first
    line is data; ``names`` then names its fields (default: :data:`POSITIONAL_COLUMNS`).
    """

    user: str | None = None
    item: str | None = None
    timestamp: str | None = None
    rating: str | None = None
    header: bool = True
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.names and self.header:
            raise ValueError("column names are for a file without a header (header=False)")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"column names repeat: {', '.join(self.names)}")


@dataclass(frozen=True)
class ItemColumns:
    """Columns of an item table: the id (default: the interaction item column) and texts.

    ``category_sep`` splits a categories value into separate categories (``Action|Comedy``
    with ``"|"``); without it the value is one category.
    """

    item: str | None = None
    title: str | None = "title"
    categories: str | None = None
    brand: str | None = None
    description: str | None = None
    category_sep: str | None = None

    def text_columns(self) -> dict[str, str]:
        """galrec text field -> source column, for the fields that are mapped."""
        return {name: column for name in TEXT_FIELDS if (column := getattr(self, name))}

    def split_categories(self, value: str) -> list[str]:
        """The categories in one categories value."""
        parts = value.split(self.category_sep) if self.category_sep else [value]
        return [part.strip() for part in parts if part.strip()]


def _suffix(path: Path) -> str:
    suffixes = [suffix.lower() for suffix in path.suffixes if suffix.lower() != ".gz"]
    return suffixes[-1] if suffixes else ""


@dataclass(frozen=True)
class Table:
    """An opened table: its column names and, for a text file, how its lines split."""

    path: Path
    names: tuple[str, ...]
    dialect: Dialect | None  # None: Parquet

    @property
    def header_line(self) -> int | None:
        """The line naming the columns (1), or None: Parquet, or a file without a header."""
        return 1 if self.dialect is not None and self.dialect.skip_lines else None

    def read(
        self, fields: Mapping[str, Kind], progress: ProgressFn | None = None
    ) -> Iterator[dict[str, Any]]:
        """Blocks of the requested columns, validated by their kinds."""
        if self.dialect is None:
            return _read_parquet(self.path, fields, progress)
        return read_delimited(self.path, self.dialect, fields, progress)


def open_table(
    path: Path,
    *,
    delimiter: str | None = None,
    header: bool = True,
    names: Sequence[str] = (),
) -> Table:
    """A CSV/TSV or Parquet table, by suffix. The delimiter is ``delimiter``, else a tab for
    ``.tsv``/``.tab``, a comma for ``.csv``, and for other suffixes (``u.data``) a tab if the
    first line holds one. Tab-separated files are read without quoting."""
    require_file(path)
    if _suffix(path) in PARQUET_SUFFIXES:
        if not header:
            raise DataFormatError(
                path, None, None, "Parquet names its columns; --no-header/--columns are for CSV/TSV"
            )
        return Table(path, tuple(_parquet_file(path).schema_arrow.names), None)
    if delimiter is None:
        if _suffix(path) in TAB_SUFFIXES:
            delimiter = "\t"
        elif _suffix(path) == ".csv":
            delimiter = ","
        else:
            first = next((text for _number, text in iter_lines(path)), "")
            delimiter = "\t" if "\t" in first else ","
    quoted = delimiter != "\t"
    first_line = tuple(read_header(path, delimiter, quoted))
    if header:
        return Table(path, first_line, Dialect(first_line, delimiter, quoted))
    if names and len(names) != len(first_line):
        raise DataFormatError(
            path, 1, None, f"{len(names)} column names given, the line has {len(first_line)} fields"
        )
    if not names and len(first_line) not in POSITIONAL_COLUMNS:
        raise DataFormatError(
            path,
            1,
            None,
            f"{len(first_line)} fields per line; name them with --columns (the default names "
            "cover 2 to 4 fields: user,item[,rating][,timestamp])",
        )
    positional = tuple(names) or POSITIONAL_COLUMNS[len(first_line)]
    return Table(path, positional, Dialect(positional, delimiter, quoted, skip_lines=0))


def _normalised(name: str) -> str:
    return "".join(char for char in name.lower() if char not in "_-. ")


def resolve_columns(table: Table, columns: TableColumns) -> dict[str, str]:
    """Role (user, item, timestamp, rating) -> source column: the given ones as given, the
    others found by :data:`COLUMN_ALIASES` (user and item must be found; the others may be
    absent). A role matched by two columns is an error naming both; a column given for one
    role is never found for another."""
    given_columns = {getattr(columns, role) for role in COLUMN_ALIASES}
    chosen: dict[str, str] = {}
    for role, aliases in COLUMN_ALIASES.items():
        given = getattr(columns, role)
        if given is not None:
            if not (given == NO_COLUMN and role in ("timestamp", "rating")):
                chosen[role] = given
            continue
        matches = [
            name
            for name in table.names
            if _normalised(name) in aliases and name not in given_columns
        ]
        if len(matches) > 1:
            raise DataFormatError(
                table.path,
                table.header_line,
                None,
                f"ambiguous {role} column: {', '.join(matches)} all fit; "
                f"pass {OPTION_OF_ROLE[role]}",
            )
        if matches:
            chosen[role] = matches[0]
        elif role in ("user", "item"):
            raise DataFormatError(
                table.path,
                table.header_line,
                None,
                f"no {role} column: found {', '.join(table.names)}; pass {OPTION_OF_ROLE[role]}",
            )
    return chosen


def _parquet_file(path: Path) -> pq.ParquetFile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, *READ_ERRORS) as error:
        raise DataFormatError(path, None, None, f"not a readable Parquet file: {error}") from None


def _read_parquet(
    path: Path, fields: Mapping[str, Kind], progress: ProgressFn | None
) -> Iterator[dict[str, Any]]:
    """Blocks of a Parquet file, validated by the same rules as text files (rows are named)."""
    import pyarrow as pa

    table = _parquet_file(path)
    names = table.schema_arrow.names
    for name in fields:
        if name not in names:
            raise DataFormatError(
                path, None, name, f"missing column; the file has: {', '.join(names)}"
            )
    first_row = 0
    groups_done = 0
    try:
        for batch in table.iter_batches(batch_size=1 << 16, columns=list(fields)):
            yield {
                name: _parquet_column(path, name, batch.column(name), kind, first_row)
                for name, kind in fields.items()
            }
            first_row += batch.num_rows
            if progress is not None and table.metadata.num_row_groups:
                done = round(path.stat().st_size * first_row / max(table.metadata.num_rows, 1))
                progress(done - groups_done)
                groups_done = done
    except (pa.ArrowException, *READ_ERRORS) as error:  # corrupt pages, failed reads
        raise read_error(path, error) from None


def _parquet_column(path: Path, name: str, column: pa.Array, kind: Kind, first_row: int) -> Any:
    """``column`` cast to strings (ids, texts) or float seconds (numbers, times), then validated
    by :func:`convert_column`; a column of the wrong type or a bad value is named."""
    import pyarrow as pa
    import pyarrow.compute as pc

    numeric = kind in NUMERIC_KINDS
    try:
        if numeric and (pa.types.is_timestamp(column.type) or pa.types.is_date(column.type)):
            column = pc.cast(column, pa.timestamp("s"), safe=False).cast(pa.int64())
        if kind is Kind.TIME and (
            pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        ):
            cast = column  # numbers or ISO-8601 dates, told apart by convert_column
        else:
            # unsafe: integers beyond 2**53 round, and then fail the range rule on their row
            cast = (
                pc.cast(column, pa.float64(), safe=False)
                if numeric
                else pc.cast(column, pa.string())
            )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
        wanted = {Kind.ID: "ids (strings or integers)", Kind.TEXT: "text"}.get(kind, "numbers")
        raise DataFormatError(
            path, None, name, f"column type {column.type} cannot be read as {wanted}: {error}"
        ) from None
    try:
        return convert_column(cast, kind)
    except BadValue as bad:
        raise DataFormatError(path, first_row + bad.row + 1, name, bad.reason, unit="row") from None


def load_table(
    interactions: Path,
    columns: TableColumns | None = None,
    *,
    items: Path | None = None,
    item_columns: ItemColumns | None = None,
    delimiter: str | None = None,
    progress: ProgressFn | None = None,
) -> RawDataset:
    """Load interactions (and optionally item texts) from tables with named columns.

    ``RawDataset.columns`` records the source column of each role, found or given.
    """
    columns = columns or TableColumns()
    interactions = Path(interactions)
    table = open_table(
        interactions, delimiter=delimiter, header=columns.header, names=columns.names
    )
    chosen = resolve_columns(table, columns)
    kinds = {"user": Kind.ID, "item": Kind.ID, "timestamp": Kind.TIME, "rating": Kind.NUMBER}
    fields = {column: kinds[role] for role, column in chosen.items()}
    time, rating = chosen.get("timestamp"), chosen.get("rating")
    builder = InteractionBuilder()
    try:
        for block in table.read(fields, progress):
            builder.add(
                block[chosen["user"]],
                block[chosen["item"]],
                block[time] if time else None,
                block[rating] if rating else None,
            )
    except DataFormatError as error:
        raise _found_by_name(error, chosen, columns) from None
    sources = [interactions]
    records = {}
    if items is not None:
        items = Path(items)
        sources.append(items)
        item_columns = item_columns or ItemColumns()
        item_id = item_columns.item or chosen["item"]
        text_columns = item_columns.text_columns()
        item_fields = {item_id: Kind.ID, **dict.fromkeys(text_columns.values(), Kind.TEXT)}
        blocks = open_table(items, delimiter=delimiter).read(item_fields, progress)
        records = collect_item_records(
            blocks, item_id, text_columns, builder.items.id_set(), item_columns.split_categories
        )
    name = interactions.name.split(".")[0]
    return builder.build(name, sources, records, has_timestamps=time is not None, columns=chosen)


def _found_by_name(
    error: DataFormatError, chosen: Mapping[str, str], columns: TableColumns
) -> DataFormatError:
    """``error``, saying so when its column was taken as time or rating by its name alone."""
    for role in ("timestamp", "rating"):
        if getattr(columns, role) is None and role in chosen and error.field == chosen[role]:
            return DataFormatError(
                error.path,
                error.line,
                error.field,
                f"{error.message} (taken as the {role} column by its name; "
                f"pass {OPTION_OF_ROLE[role]} {NO_COLUMN} to ignore it)",
                unit=error.unit,
            )
    return error
