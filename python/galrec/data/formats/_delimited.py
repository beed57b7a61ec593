"""Streaming reader for delimited text files (CSV, TSV, RecBole atomic files) built on pyarrow.

The fast path reads blocks with pyarrow and validates whole columns at once. When anything is
wrong, a slow line-by-line scan finds the first bad line so the error can name the file, the
line and the field, instead of surfacing a parser's internal message.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galrec.data.errors import DataFormatError
from galrec.data.formats._io import ArrowInput, ProgressFn, iter_lines

if TYPE_CHECKING:
    import pyarrow as pa

BLOCK_BYTES = 16 << 20


class Kind(Enum):
    """How a column is validated and handed back."""

    ID = "id"  # non-empty string -> pyarrow string array
    NUMBER = "number"  # finite float -> numpy float64
    TEXT = "text"  # any string -> pyarrow string array


@dataclass(frozen=True)
class Dialect:
    """How to split a delimited file; ``column_names`` name every field of a line."""

    column_names: tuple[str, ...]
    delimiter: str = ","
    quoted: bool = True
    encoding: str = "utf-8"
    skip_lines: int = 1


def read_header(path: Path, delimiter: str, quoted: bool, encoding: str = "utf-8") -> list[str]:
    """The field names on the first line of a file (a UTF-8 byte-order mark is dropped)."""
    for _number, line in iter_lines(path, encoding):
        text = line.removeprefix("\ufeff")
        if quoted:
            return next(csv.reader([text], delimiter=delimiter))
        return text.split(delimiter)
    raise DataFormatError(path, 1, None, "file is empty (no header line)")


def require_columns(path: Path, available: Sequence[str], wanted: Sequence[str]) -> None:
    """Raise a :class:`DataFormatError` naming the first wanted column that is absent."""
    for name in wanted:
        if name not in available:
            raise DataFormatError(
                path, 1, name, f"missing column; the file has: {', '.join(available)}"
            )


def read_delimited(
    path: Path,
    dialect: Dialect,
    fields: Mapping[str, Kind],
    progress: ProgressFn | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield one dict per block: each requested field converted according to its kind."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    require_columns(path, dialect.column_names, list(fields))
    bad_rows: list[object] = []

    def on_invalid_row(row: object) -> str:
        bad_rows.append(row)
        return "skip"

    read_options = pacsv.ReadOptions(
        column_names=list(dialect.column_names),
        skip_rows=dialect.skip_lines,
        block_size=BLOCK_BYTES,
        encoding=dialect.encoding,
    )
    parse_options = pacsv.ParseOptions(
        delimiter=dialect.delimiter,
        quote_char='"' if dialect.quoted else False,
        invalid_row_handler=on_invalid_row,
    )
    convert_options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(fields, pa.string()),
        include_columns=list(fields),
        strings_can_be_null=False,
    )
    with ArrowInput(path, progress) as source:
        try:
            reader = pacsv.open_csv(
                source.stream,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
            for batch in reader:
                if bad_rows:
                    raise _ScanNeeded
                yield {
                    name: convert_column(batch.column(name), kind) for name, kind in fields.items()
                }
                source.report()
            if bad_rows:
                raise _ScanNeeded
        except (_ScanNeeded, pa.ArrowInvalid, ValueError) as problem:
            raise locate_error(path, dialect, fields, problem) from None


class _ScanNeeded(Exception):
    """Internal signal: the fast path saw a problem; scan the file to name the line."""


def convert_column(column: pa.Array, kind: Kind) -> Any:
    """Validate a string or number column as ``kind``; ``ValueError`` on the first violation."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if kind is not Kind.TEXT and column.null_count:
        raise ValueError("missing value")
    if kind is Kind.NUMBER:
        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        if not np.isfinite(values).all():
            raise ValueError("non-finite number")
        return values
    if kind is Kind.ID and pc.any(pc.equal(column, "")).as_py():
        raise ValueError("empty id")
    column.validate(full=True)  # the JSON reader does not check UTF-8 by itself
    return column


def check_value(value: str, kind: Kind) -> str | None:
    """Why ``value`` is not a valid ``kind`` (``None`` if it is): the scan's rule set."""
    if kind is Kind.ID and value == "":
        return "empty id"
    if kind is Kind.NUMBER:
        try:
            number = float(value)
        except ValueError:
            return f"not a number: {value[:40]!r}"
        if not math.isfinite(number):
            return f"not a finite number: {value!r}"
    return None


def iter_rows(path: Path, dialect: Dialect) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for every non-empty data line, the slow exact way."""
    lines = (
        (number, text)
        for number, text in iter_lines(path, dialect.encoding)
        if number > dialect.skip_lines
    )
    if not dialect.quoted:
        for number, text in lines:
            if text:
                yield number, text.split(dialect.delimiter)
        return
    numbered = iter(lines)
    current = [0]

    def texts() -> Iterator[str]:
        for number, text in numbered:
            current[0] = number
            yield text

    try:
        for fields in csv.reader(texts(), delimiter=dialect.delimiter, strict=True):
            if fields:
                yield current[0], fields
    except csv.Error as error:
        raise DataFormatError(path, current[0], None, f"malformed CSV: {error}") from None


def locate_error(
    path: Path, dialect: Dialect, fields: Mapping[str, Kind], problem: BaseException
) -> DataFormatError:
    """Scan the file line by line and describe its first bad line."""
    positions = {name: dialect.column_names.index(name) for name in fields}
    expected = len(dialect.column_names)
    try:
        for number, values in iter_rows(path, dialect):
            if len(values) != expected:
                return DataFormatError(
                    path, number, None, f"expected {expected} fields, found {len(values)}"
                )
            for name, kind in fields.items():
                reason = check_value(values[positions[name]], kind)
                if reason is not None:
                    return DataFormatError(path, number, name, reason)
    except DataFormatError as error:
        return error
    return DataFormatError(path, None, None, f"could not be parsed: {problem}")
