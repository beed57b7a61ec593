"""File access shared by the loaders: existence checks, gzip detection, progress, text lines."""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from galrec.data.errors import DataFormatError

if TYPE_CHECKING:
    import pyarrow as pa

ProgressFn = Callable[[int], None]
"""Called with the number of (compressed) bytes read since the last call."""

GZIP_MAGIC = b"\x1f\x8b"
PROGRESS_LINES = 65_536


def require_file(path: Path) -> Path:
    """Return ``path`` if it is a readable file, else raise a :class:`DataFormatError`."""
    if not path.is_file():
        reason = "is not a file" if path.exists() else "file not found"
        raise DataFormatError(path, None, None, reason)
    return path


def is_gzip(path: Path) -> bool:
    """Whether the file starts with the gzip magic bytes (the extension is not trusted)."""
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


class ArrowInput:
    """A pyarrow input stream over a plain or gzip file that reports progress in file bytes."""

    def __init__(self, path: Path, progress: ProgressFn | None = None) -> None:
        import pyarrow as pa

        require_file(path)
        self._raw = pa.OSFile(str(path), "rb")
        self.stream: pa.NativeFile = (
            pa.CompressedInputStream(self._raw, "gzip") if is_gzip(path) else self._raw
        )
        self._progress = progress
        self._reported = 0

    def report(self) -> None:
        """Tell the progress callback how far into the file the reader has got."""
        if self._progress is None:
            return
        position = self._raw.tell()
        self._progress(position - self._reported)
        self._reported = position

    def close(self) -> None:
        self.stream.close()
        if self.stream is not self._raw:
            self._raw.close()

    def __enter__(self) -> ArrowInput:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def iter_lines(
    path: Path, encoding: str = "utf-8", progress: ProgressFn | None = None
) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` with the line ending removed; bad bytes name their line."""
    require_file(path)
    with open(path, "rb") as raw:
        handle: Iterable[bytes] = gzip.GzipFile(fileobj=raw) if is_gzip(path) else raw
        reported = 0
        for number, line in enumerate(handle, start=1):
            try:
                text = line.decode(encoding)
            except UnicodeDecodeError as error:
                raise DataFormatError(
                    path,
                    number,
                    None,
                    f"not valid {encoding}: byte {line[error.start]:#04x} "
                    f"at column {error.start + 1}",
                ) from None
            if progress is not None and number % PROGRESS_LINES == 0:
                position = raw.tell()
                progress(position - reported)
                reported = position
            yield number, text.rstrip("\r\n")
        if progress is not None:
            progress(raw.tell() - reported)
