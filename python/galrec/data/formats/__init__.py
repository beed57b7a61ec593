"""Loaders for the source formats galrec reads, and one entry point that dispatches by name."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from galrec.data.errors import DataFormatError
from galrec.data.formats._io import ProgressFn
from galrec.data.formats.amazon import load_amazon
from galrec.data.formats.movielens import load_movielens
from galrec.data.formats.recbole import load_recbole
from galrec.data.formats.table import (
    ItemColumns,
    TableColumns,
    TableData,
    is_table_data,
    load_table,
)
from galrec.data.formats.yelp import load_yelp
from galrec.data.raw import RawDataset

FORMATS = {
    "recbole": "RecBole atomic files: the directory or the .inter file (.item/.user beside it)",
    "movielens": "a MovieLens directory: ml-100k, ml-1m/10m (.dat) or ml-20m/25m/32m (.csv)",
    "amazon": "Amazon reviews JSON lines (2014/2018/2023), then optionally the metadata file",
    "yelp": "Yelp review.json (or its directory), then optionally business.json",
    "table": "a CSV/TSV/Parquet interaction table, then optionally an item table",
}
"""Format name -> what its inputs are."""

__all__ = [
    "FORMATS",
    "ItemColumns",
    "TableColumns",
    "TableData",
    "is_table_data",
    "load_amazon",
    "load_movielens",
    "load_recbole",
    "load_source",
    "load_table",
    "load_yelp",
]


def load_source(
    format_name: str,
    inputs: Sequence[str | Path | TableData],
    *,
    table_columns: TableColumns | None = None,
    item_columns: ItemColumns | None = None,
    delimiter: str | None = None,
    progress: ProgressFn | None = None,
) -> RawDataset:
    """Load ``inputs`` with the loader named ``format_name`` (a key of :data:`FORMATS`). The
    ``table`` format also takes tables in memory (a pandas DataFrame or a pyarrow Table)."""
    in_memory = [is_table_data(value) for value in inputs]
    where = None if not inputs or in_memory[0] else Path(inputs[0])
    if format_name not in FORMATS:
        raise DataFormatError(
            where, None, None, f"unknown format {format_name!r}; known: {', '.join(FORMATS)}"
        )
    most = 1 if format_name in ("recbole", "movielens") else 2
    if not 1 <= len(inputs) <= most:
        raise DataFormatError(
            where, None, None, f"format {format_name!r} takes 1 to {most} inputs, got {len(inputs)}"
        )
    if format_name == "table":
        return load_table(
            inputs[0],
            table_columns,
            items=inputs[1] if len(inputs) > 1 else None,
            item_columns=item_columns,
            delimiter=delimiter,
            progress=progress,
        )
    if any(in_memory):
        raise DataFormatError(
            where,
            None,
            None,
            f"format {format_name!r} reads files; a DataFrame or pyarrow Table is read with "
            "format 'table'",
        )
    paths = [Path(path) for path in inputs]
    second = paths[1] if len(paths) > 1 else None
    if format_name == "recbole":
        return load_recbole(paths[0], progress)
    if format_name == "movielens":
        return load_movielens(paths[0], progress)
    if format_name == "amazon":
        return load_amazon(paths[0], second, progress=progress)
    return load_yelp(paths[0], second, progress=progress)
