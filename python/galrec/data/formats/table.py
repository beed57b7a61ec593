"""Generic interaction and item tables (CSV, TSV or Parquet) with a column mapping."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
from galrec.data.formats._io import READ_ERRORS, ProgressFn, read_error, require_file
from galrec.data.formats._records import TEXT_FIELDS, collect_item_records
from galrec.data.raw import InteractionBuilder, RawDataset

if TYPE_CHECKING:
    import pyarrow as pa

PARQUET_SUFFIXES = (".parquet", ".pq")
TAB_SUFFIXES = (".tsv", ".tab")


@dataclass(frozen=True)
class TableColumns:
    """Which source columns hold the user, item, timestamp and rating of an interaction."""

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str | None = None
    rating: str | None = None


@dataclass(frozen=True)
class ItemColumns:
    """Columns of an item table: the id (default: the interaction item column) and texts."""

    item: str | None = None
    title: str | None = "title"
    categories: str | None = None
    brand: str | None = None
    description: str | None = None

    def text_columns(self) -> dict[str, str]:
        """galrec text field -> source column, for the fields that are mapped."""
        return {name: column for name in TEXT_FIELDS if (column := getattr(self, name))}


def _suffix(path: Path) -> str:
    suffixes = [suffix.lower() for suffix in path.suffixes if suffix.lower() != ".gz"]
    return suffixes[-1] if suffixes else ""


def read_table(
    path: Path,
    fields: Mapping[str, Kind],
    *,
    delimiter: str | None = None,
    progress: ProgressFn | None = None,
) -> Iterator[dict[str, Any]]:
    """Blocks of the requested columns from a CSV/TSV (by suffix or ``delimiter``) or Parquet."""
    require_file(path)
    if _suffix(path) in PARQUET_SUFFIXES:
        yield from _read_parquet(path, fields, progress)
        return
    tab = _suffix(path) in TAB_SUFFIXES
    delimiter = delimiter or ("\t" if tab else ",")
    quoted = not tab
    names = tuple(read_header(path, delimiter, quoted))
    yield from read_delimited(path, Dialect(names, delimiter, quoted), fields, progress)


def _read_parquet(
    path: Path, fields: Mapping[str, Kind], progress: ProgressFn | None
) -> Iterator[dict[str, Any]]:
    """Blocks of a Parquet file, validated by the same rules as text files (rows are named)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except (pa.ArrowException, *READ_ERRORS) as error:
        raise DataFormatError(path, None, None, f"not a readable Parquet file: {error}") from None
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
        # unsafe: integers beyond 2**53 round, and then fail the range rule on their row
        cast = (
            pc.cast(column, pa.float64(), safe=False) if numeric else pc.cast(column, pa.string())
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
    """Load interactions (and optionally item texts) from tables with named columns."""
    columns = columns or TableColumns()
    fields = {columns.user: Kind.ID, columns.item: Kind.ID}
    if columns.timestamp:
        fields[columns.timestamp] = Kind.TIME
    if columns.rating:
        fields[columns.rating] = Kind.NUMBER
    builder = InteractionBuilder()
    interactions = Path(interactions)
    for block in read_table(interactions, fields, delimiter=delimiter, progress=progress):
        builder.add(
            block[columns.user],
            block[columns.item],
            block[columns.timestamp] if columns.timestamp else None,
            block[columns.rating] if columns.rating else None,
        )
    sources = [interactions]
    records = {}
    if items is not None:
        items = Path(items)
        sources.append(items)
        item_columns = item_columns or ItemColumns()
        item_id = item_columns.item or columns.item
        text_columns = item_columns.text_columns()
        item_fields = {item_id: Kind.ID, **dict.fromkeys(text_columns.values(), Kind.TEXT)}
        blocks = read_table(items, item_fields, delimiter=delimiter, progress=progress)
        records = collect_item_records(blocks, item_id, text_columns, builder.items.id_set())
    name = interactions.name.split(".")[0]
    return builder.build(name, sources, records, has_timestamps=columns.timestamp is not None)
