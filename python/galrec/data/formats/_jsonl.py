"""JSON-lines reading: a fast pyarrow path for big interaction files and a tolerant line-by-line
path for metadata (which may be Python-literal "loose JSON", as Amazon's 2014 metadata is)."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from galrec.data.errors import DataFormatError
from galrec.data.formats._delimited import NUMERIC_KINDS, Kind, check_value, convert_column
from galrec.data.formats._io import READ_ERRORS, ArrowInput, ProgressFn, iter_lines

BLOCK_BYTES = 16 << 20


def first_object(path: Path) -> dict[str, Any]:
    """The first non-empty line as an object (JSON or Python literal), to sniff the layout."""
    for number, text in iter_lines(path):
        if text.strip():
            return parse_object(path, number, text)
    raise DataFormatError(path, None, None, "file is empty")


def parse_object(path: Path, number: int, text: str, loose: bool = True) -> dict[str, Any]:
    """One line as a dict: JSON, or else (with ``loose``) a Python literal ("loose JSON").

    Nesting too deep for Python's parsers is reported on its line like any other bad line.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise DataFormatError(path, number, None, "JSON nested too deeply to parse") from None
    except json.JSONDecodeError as error:
        value = _python_literal(text) if loose else None
        if value is None:
            raise DataFormatError(path, number, None, f"not valid JSON: {error.msg}") from None
    if not isinstance(value, dict):
        raise DataFormatError(path, number, None, "expected a JSON object")
    return value


def _python_literal(text: str) -> Any:
    """``text`` as a Python literal, or ``None`` if it is not one."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def read_json_columns(
    path: Path, fields: Mapping[str, Kind], progress: ProgressFn | None = None
) -> Iterator[dict[str, Any]]:
    """Blocks of the requested top-level fields of a JSON-lines file; ids and numbers must be
    present on every line. Other fields are ignored whatever their type."""
    import pyarrow as pa
    from pyarrow import json as pajson

    types = {
        Kind.ID: pa.string(),
        Kind.TEXT: pa.string(),
        Kind.NUMBER: pa.float64(),
        Kind.TIME: pa.float64(),
    }
    schema = pa.schema([(name, types[kind]) for name, kind in fields.items()])
    parse_options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    read_options = pajson.ReadOptions(block_size=BLOCK_BYTES)
    with ArrowInput(path, progress) as source:
        try:
            reader = pajson.open_json(
                source.stream, read_options=read_options, parse_options=parse_options
            )
            for batch in reader:
                yield {
                    name: convert_column(batch.column(name), kind) for name, kind in fields.items()
                }
                source.report()
        except (ValueError, *READ_ERRORS) as problem:
            raise locate_json_error(path, fields, problem) from None


def locate_json_error(
    path: Path, fields: Mapping[str, Kind], problem: BaseException
) -> DataFormatError:
    """Scan line by line for the first line that breaks the rules of ``fields``."""
    try:
        for number, text in iter_lines(path):
            if not text.strip():
                continue
            row = parse_object(path, number, text, loose=False)
            for name, kind in fields.items():
                reason = _check_json_value(row.get(name), kind)
                if reason is not None:
                    return DataFormatError(path, number, name, reason)
    except DataFormatError as error:
        return error
    return DataFormatError(path, None, None, f"could not be parsed: {problem}")


def _check_json_value(value: Any, kind: Kind) -> str | None:
    if value is None:
        return None if kind is Kind.TEXT else "missing value"
    if kind in NUMERIC_KINDS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, found {json.dumps(value)[:40]}"
        return check_value(str(value), kind)
    if not isinstance(value, str):
        return f"expected a string, found {json.dumps(value)[:40]}"
    return check_value(value, kind)


def iter_wanted_objects(
    path: Path,
    id_keys: tuple[str, ...],
    wanted: Collection[str],
    progress: ProgressFn | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(id, object)`` for lines whose id (the first of ``id_keys`` present) is in ``wanted``.

    Lines of other items are skipped after a cheap regex look at their id, so a metadata file
    much larger than the interacted catalogue is not parsed in full.
    """
    patterns = [
        re.compile(rf"""["']{re.escape(key)}["']\s*:\s*["']([^"']+)["']""") for key in id_keys
    ]
    for number, text in iter_lines(path, progress=progress):
        stripped = text.strip()
        if not stripped:
            continue
        seen = next((m.group(1) for p in patterns if (m := p.search(stripped))), None)
        if seen is not None and seen not in wanted:
            continue
        row = parse_object(path, number, stripped)
        raw_id = next((row[key] for key in id_keys if row.get(key) is not None), None)
        if raw_id is None:
            raise DataFormatError(path, number, id_keys[0], "missing value")
        if str(raw_id) in wanted:
            yield str(raw_id), row
