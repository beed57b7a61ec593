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
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from galrec.data.errors import DataFormatError
from galrec.data.formats._io import READ_ERRORS, ArrowInput, ProgressFn, iter_lines

if TYPE_CHECKING:
    import pyarrow as pa

BLOCK_BYTES = 16 << 20
TIME_LIMIT = 2**53
"""Times must have ``|time| < 2**53`` (9,007,199,254,740,992). Below it every whole number is
exact in float64 (the type times are read as), so no time is rounded onto another, flooring to
int64 cannot overflow, and the difference of any two times fits in int64. Seconds, milliseconds
and microseconds since 1970 all fit; nanoseconds do not."""


class Kind(Enum):
    """How a column is validated and handed back."""

    ID = "id"  # non-empty string without NUL bytes -> pyarrow string array
    NUMBER = "number"  # finite float -> numpy float64
    TIME = "time"  # number with |t| < TIME_LIMIT, or ISO-8601 date -> numpy float64 seconds
    TEXT = "text"  # any string -> pyarrow string array


NUMERIC_KINDS = (Kind.NUMBER, Kind.TIME)


class BadValue(ValueError):
    """A value broke the rule of its column's kind; ``row`` is its 0-based row in the block."""

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(reason)
        self.row = row
        self.reason = reason


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
        except (_ScanNeeded, ValueError, *READ_ERRORS) as problem:
            raise locate_error(path, dialect, fields, problem) from None


class _ScanNeeded(Exception):
    """Internal signal: the fast path saw a problem; scan the file to name the line."""


def convert_column(column: pa.Array, kind: Kind) -> Any:
    """Validate a string or number column as ``kind``; :class:`BadValue` names the first bad row.

    The rules are those of :func:`check_value`, applied to whole columns at once.
    """
    import pyarrow.compute as pc

    if kind is not Kind.TEXT and column.null_count:
        raise BadValue(_first_true(column.is_null()), "missing value")
    if kind in NUMERIC_KINDS:
        values = _numbers(column, kind)
        good = np.isfinite(values)
        if kind is Kind.TIME:
            good &= np.abs(values) < TIME_LIMIT
        if not good.all():
            row = int(np.argmin(good))
            reason = number_problem(float(values[row]), kind, str(values[row]))
            assert reason is not None  # the column test above and the value rule agree
            raise BadValue(row, reason)
        return values
    if kind is Kind.ID:
        bad = pc.or_(pc.equal(column, ""), pc.match_substring(column, "\x00"))
        if pc.any(bad).as_py():
            row = _first_true(bad)
            reason = id_problem(column[row].as_py())
            assert reason is not None
            raise BadValue(row, reason)
    column.validate(full=True)  # the JSON reader does not check UTF-8 by itself
    return column


def _numbers(column: pa.Array, kind: Kind) -> np.ndarray:
    """``column`` as float64; a time column of text may hold ISO-8601 dates instead."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    target = _time_type(column[0].as_py()) if kind is Kind.TIME and text and len(column) else None
    try:
        values = pc.cast(column, target or pa.float64())
    except pa.ArrowInvalid:
        if kind is not Kind.TIME:
            raise
        return _times_one_by_one(column)
    if target is None or pa.types.is_floating(target):
        return values.to_numpy(zero_copy_only=False)
    return pc.cast(values, pa.int64()).to_numpy(zero_copy_only=False) / 1e6


def _time_type(first: str) -> pa.DataType:
    """What a text time column is cast to, judged by its first value: float64 for a number,
    else microsecond timestamps, zoned if that date has a zone (pyarrow parses naive dates only
    as naive and zoned ones only as zoned). A failed cast costs seconds per million rows, so
    the column is not tried against each type in turn."""
    import pyarrow as pa

    try:
        float(first)
        return pa.float64()
    except ValueError:
        pass
    try:
        zoned = datetime.fromisoformat(first).tzinfo is not None
    except ValueError:
        zoned = False  # the cast fails, and the exact rule names the value
    return pa.timestamp("us", tz="UTC" if zoned else None)


def _times_one_by_one(column: pa.Array) -> np.ndarray:
    """The exact rule, row by row, for a column mixing zones, or numbers and dates, or holding
    a value that is neither: :class:`BadValue` names the first such row."""
    values = np.empty(len(column), dtype=np.float64)
    for row, text in enumerate(column.to_pylist()):
        seconds = time_value(text)
        if seconds is None:
            raise BadValue(row, _not_a_time(text))
        values[row] = seconds
    return values


def time_value(text: str) -> float | None:
    """Seconds since 1970 of a number or an ISO-8601 date (naive dates are UTC), else None."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _not_a_time(text: str) -> str:
    return f"not a number: {text[:40]!r} (nor an ISO-8601 date like 2021-03-04T05:06:07Z)"


def _first_true(mask: pa.BooleanArray) -> int:
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])


def check_value(value: str, kind: Kind) -> str | None:
    """Why ``value`` is not a valid ``kind`` (``None`` if it is): the scan's rule set."""
    if kind is Kind.ID:
        return id_problem(value)
    if kind is Kind.TIME:
        seconds = time_value(value)
        return _not_a_time(value) if seconds is None else number_problem(seconds, kind, value)
    if kind is Kind.NUMBER:
        try:
            number = float(value)
        except ValueError:
            return f"not a number: {value[:40]!r}"
        return number_problem(number, kind, value)
    return None


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an id: empty, or holding a NUL byte (C strings end there)."""
    if value == "":
        return "empty id"
    if "\x00" in value:
        return f"id holds a NUL byte at character {value.index(chr(0)) + 1}: {value[:40]!r}"
    return None


def number_problem(number: float, kind: Kind, text: str) -> str | None:
    """Why ``number`` (written ``text`` in the source) is not a valid number or time."""
    if not math.isfinite(number):
        return f"not a finite number: {text!r}"
    if kind is Kind.TIME and abs(number) >= TIME_LIMIT:
        return (
            f"time {text} out of range: |time| must be below 2**53 = {TIME_LIMIT} to stay "
            "exact in float64 and int64 (seconds, milliseconds or microseconds since 1970 fit)"
        )
    return None


def iter_rows(path: Path, dialect: Dialect) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` for every non-empty record, the slow exact way; a record
    quoted over several lines is numbered by its first line."""
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
    current = 0  # the line the csv reader last took
    ended = False  # the reader asked for a line past the end: a quoted field never closed

    def texts() -> Iterator[str]:
        nonlocal current, ended
        for number, text in lines:
            current = number
            yield text
        ended = True

    start = dialect.skip_lines + 1  # the first line of the record being read
    try:
        for fields in csv.reader(texts(), delimiter=dialect.delimiter, strict=True):
            if fields:
                yield start, fields
            start = current + 1
    except csv.Error as error:
        if ended:
            raise DataFormatError(
                path,
                start,
                None,
                "malformed CSV: unclosed quote (the record starting on this line runs to the "
                "end of the file)",
            ) from None
        raise DataFormatError(path, current, None, f"malformed CSV: {error}") from None


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
