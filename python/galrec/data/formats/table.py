"""Generic interaction and item tables (CSV, TSV or Parquet) with a column mapping."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

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

TableData: TypeAlias = Any
"""A table in memory: a pyarrow ``Table`` or a pandas ``DataFrame`` (pandas is optional, so the
type is not spelled out); :func:`is_table_data` tells one from a path."""

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
    """An opened table: its column names and where its rows come from: a text file (``dialect``
    says how its lines split), a Parquet file, or a table in memory (``data``, which errors name
    ``source`` and count rows from 0, as ``df.iloc`` does; ``path`` is then None)."""

    path: Path | None
    names: tuple[str, ...]
    dialect: Dialect | None = None  # None: Parquet, or a table in memory
    data: TableData = None
    source: str | None = None

    @property
    def header_line(self) -> int | None:
        """The line naming the columns (1), or None: Parquet, in memory, or no header line."""
        return 1 if self.dialect is not None and self.dialect.skip_lines else None

    def error(
        self, line: int | None, field: str | None, message: str, *, unit: str = "line"
    ) -> DataFormatError:
        """A :class:`DataFormatError` naming this table."""
        return DataFormatError(self.path, line, field, message, unit=unit, source=self.source)

    def row_error(self, row: int, field: str, message: str) -> DataFormatError:
        """An error at data row ``row`` (0-based) of Parquet (named 1-based) or memory."""
        if self.data is not None:
            return self.error(row, field, message, unit="0-based row")
        return self.error(row + 1, field, message, unit="row")

    def option(self, role: str, value: str | None = None) -> str:
        """How a caller names the column of ``role``: the command's option for a file, the
        :class:`TableColumns` field for a table in memory (only the Python API takes one)."""
        if self.data is not None:
            return f"TableColumns({role}={value!r})" if value else f"TableColumns({role}=...)"
        return f"{OPTION_OF_ROLE[role]} {value}" if value else OPTION_OF_ROLE[role]

    def read(
        self, fields: Mapping[str, Kind], progress: ProgressFn | None = None
    ) -> Iterator[dict[str, Any]]:
        """Blocks of the requested columns, validated by their kinds."""
        if self.data is not None:
            return _read_arrow(self, _arrow_of_memory(self, fields).to_batches(1 << 16), fields)
        assert self.path is not None  # a file
        if self.dialect is None:
            return _read_parquet(self, self.path, fields, progress)
        return read_delimited(self.path, self.dialect, fields, progress)


def is_table_data(value: object) -> bool:
    """Whether ``value`` is a table in memory (:data:`TableData`), not a path. pandas is looked
    up only if it was imported: a DataFrame cannot exist without it."""
    import pyarrow as pa

    pandas = sys.modules.get("pandas")
    return isinstance(value, pa.Table) or (
        pandas is not None and isinstance(value, pandas.DataFrame)
    )


def open_table_data(data: TableData, what: str = "") -> Table:
    """A table in memory, named in errors "DataFrame" or "pyarrow Table" after ``what`` (e.g.
    "item"). A DataFrame's column labels are read as strings; its index is not read."""
    import pyarrow as pa

    arrow = isinstance(data, pa.Table)
    source = f"{what} {'pyarrow Table' if arrow else 'DataFrame'}".strip()
    names = tuple(str(label) for label in (data.column_names if arrow else data.columns))
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise DataFormatError(
            None, None, None, f"column names repeat: {', '.join(repeated)}", source=source
        )
    return Table(None, names, data=data, source=source)


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
            raise table.error(
                table.header_line,
                None,
                f"ambiguous {role} column: {', '.join(matches)} all fit; pass {table.option(role)}",
            )
        if matches:
            chosen[role] = matches[0]
        elif role in ("user", "item"):
            raise table.error(
                table.header_line,
                None,
                f"no {role} column: found {', '.join(table.names)}; pass {table.option(role)}",
            )
    return chosen


def _parquet_file(path: Path) -> pq.ParquetFile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, *READ_ERRORS) as error:
        raise DataFormatError(path, None, None, f"not a readable Parquet file: {error}") from None


def _require_fields(table: Table, fields: Mapping[str, Kind]) -> None:
    """Raise an error naming the first requested column that ``table`` lacks, and its columns."""
    for name in fields:
        if name not in table.names:
            has = "the table has" if table.data is not None else "the file has"
            raise table.error(None, name, f"missing column; {has}: {', '.join(table.names)}")


def _read_parquet(
    table: Table, path: Path, fields: Mapping[str, Kind], progress: ProgressFn | None
) -> Iterator[dict[str, Any]]:
    """Blocks of a Parquet file, validated by the same rules as text files (rows are named)."""
    import pyarrow as pa

    parquet = _parquet_file(path)
    _require_fields(table, fields)
    rows = 0
    done = 0

    def report(batch: pa.RecordBatch) -> None:
        nonlocal rows, done
        rows += batch.num_rows
        if progress is not None and parquet.metadata.num_row_groups:
            now = round(path.stat().st_size * rows / max(parquet.metadata.num_rows, 1))
            progress(now - done)
            done = now

    try:
        batches = parquet.iter_batches(batch_size=1 << 16, columns=list(fields))
        yield from _read_arrow(table, batches, fields, report)
    except (pa.ArrowException, *READ_ERRORS) as error:  # corrupt pages, failed reads
        raise read_error(path, error) from None


def _arrow_of_memory(table: Table, fields: Mapping[str, Kind]) -> pa.Table:
    """The requested columns of a table in memory as a pyarrow Table. A DataFrame's columns are
    converted one by one (NaN, None and NaT become nulls), so a column Arrow cannot hold (mixed
    types in an object column) is named."""
    import pyarrow as pa

    _require_fields(table, fields)
    data = table.data
    if isinstance(data, pa.Table):
        return data.select(list(fields))
    labels = dict(zip(table.names, data.columns, strict=True))
    columns = {}
    for name in fields:
        try:
            columns[name] = pa.Array.from_pandas(data[labels[name]])
        except (pa.ArrowException, TypeError, ValueError) as error:
            raise table.error(None, name, f"cannot be read as an Arrow column: {error}") from None
    return pa.table(columns)


def _read_arrow(
    table: Table,
    batches: Iterable[pa.RecordBatch],
    fields: Mapping[str, Kind],
    report: Callable[[pa.RecordBatch], None] | None = None,
) -> Iterator[dict[str, Any]]:
    """Blocks of Arrow record batches (Parquet, memory), validated like text files' columns."""
    first_row = 0
    for batch in batches:
        yield {
            name: _arrow_column(table, name, batch.column(name), kind, first_row)
            for name, kind in fields.items()
        }
        first_row += batch.num_rows
        if report is not None:
            report(batch)


def _arrow_column(table: Table, name: str, column: pa.Array, kind: Kind, first_row: int) -> Any:
    """``column`` cast to strings (ids, texts) or float seconds (numbers, times), then validated
    by :func:`convert_column`; a column of the wrong type or a bad value is named."""
    import pyarrow as pa
    import pyarrow.compute as pc

    numeric = kind in NUMERIC_KINDS
    try:
        if pa.types.is_dictionary(column.type):  # pandas categoricals, dictionary-encoded files
            column = column.dictionary_decode()
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
        raise table.error(
            None, name, f"column type {column.type} cannot be read as {wanted}: {error}"
        ) from None
    try:
        return convert_column(cast, kind)
    except BadValue as bad:
        raise table.row_error(first_row + bad.row, name, bad.reason) from None


def load_table(
    interactions: Path | TableData,
    columns: TableColumns | None = None,
    *,
    items: Path | TableData | None = None,
    item_columns: ItemColumns | None = None,
    delimiter: str | None = None,
    progress: ProgressFn | None = None,
) -> RawDataset:
    """Load interactions (and optionally item texts) from tables with named columns: files, or
    tables in memory (:data:`TableData`) read by the same rules, never written to a file.

    ``RawDataset.columns`` records the source column of each role, found or given.
    """
    columns = columns or TableColumns()
    if is_table_data(interactions):
        table = open_table_data(interactions)
        if not columns.header:
            raise table.error(None, None, "names its columns; header/names are for CSV/TSV files")
    else:
        table = open_table(
            Path(interactions), delimiter=delimiter, header=columns.header, names=columns.names
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
        raise _found_by_name(error, table, chosen, columns) from None
    sources = [] if table.path is None else [table.path]
    records = {}
    if items is not None:
        if is_table_data(items):
            item_table = open_table_data(items, "item")
        else:
            items = Path(items)
            item_table = open_table(items, delimiter=delimiter)
            sources.append(items)
        item_columns = item_columns or ItemColumns()
        item_id = item_columns.item or chosen["item"]
        text_columns = item_columns.text_columns()
        item_fields = {item_id: Kind.ID, **dict.fromkeys(text_columns.values(), Kind.TEXT)}
        records = collect_item_records(
            item_table.read(item_fields, progress),
            item_id,
            text_columns,
            builder.items.id_set(),
            item_columns.split_categories,
        )
    name = "table" if table.path is None else table.path.name.split(".")[0]
    return builder.build(name, sources, records, has_timestamps=time is not None, columns=chosen)


def _found_by_name(
    error: DataFormatError, table: Table, chosen: Mapping[str, str], columns: TableColumns
) -> DataFormatError:
    """``error``, saying so when its column was taken as time or rating by its name alone."""
    for role in ("timestamp", "rating"):
        if getattr(columns, role) is None and role in chosen and error.field == chosen[role]:
            return DataFormatError(
                error.path,
                error.line,
                error.field,
                f"{error.message} (taken as the {role} column by its name; "
                f"pass {table.option(role, NO_COLUMN)} to ignore it)",
                unit=error.unit,
                source=error.source,
            )
    return error
