"""Errors raised by ``galrec.data``: each names the file, line and field at fault."""

from __future__ import annotations

from pathlib import Path


class DataError(Exception):
    """Base class of every error about input data or a prepared dataset."""


class DataFormatError(DataError):
    """A source file does not have the expected format.

    ``line`` is 1-based (the header is line 1 of a delimited file; for Parquet ``unit`` is
    "row" and it counts data rows; for a table in memory ``unit`` is "0-based row", the position
    ``df.iloc`` takes); ``line`` and ``field`` are ``None`` where the problem is not tied to one
    line (a missing file, an unknown format). ``source`` names an input that is no file (``path``
    None), such as a pandas DataFrame.
    """

    def __init__(
        self,
        path: str | Path | None,
        line: int | None,
        field: str | None,
        message: str,
        *,
        unit: str = "line",
        source: str | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.source = source
        self.line = line
        self.unit = unit
        self.field = field
        self.message = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = [str(self.path) if self.path is not None else self.source or "<input>"]
        if self.line is not None:
            where.append(f"{self.unit} {self.line}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}"


class EmptyDatasetError(DataError):
    """Filtering left no interactions (or a split would be empty)."""


class ManifestError(DataError):
    """A prepared dataset directory does not match its manifest."""

    def __init__(self, directory: str | Path, message: str) -> None:
        self.directory = Path(directory)
        super().__init__(f"{self.directory}: {message}")
