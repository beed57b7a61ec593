"""File access shared by the loaders: existence checks, gzip detection, progress, text lines."""

from __future__ import annotations

import gzip
import stat
import zlib
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
READ_ERRORS = (OSError, EOFError, zlib.error)
"""What reading or decompressing a file raises; pyarrow's and gzip's messages omit the file."""


def require_file(path: Path) -> Path:
    """Return ``path`` if it is a regular file, else raise a :class:`DataFormatError`.

    FIFOs, sockets and devices are refused before anything opens them: opening a FIFO blocks
    until a writer appears, and the readers need to read a file twice (a fast pass, then an
    exact scan that names the bad line), which a stream cannot give.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataFormatError(path, None, None, "file not found") from None
    except OSError as error:
        raise read_error(path, error) from None
    if stat.S_ISDIR(mode):
        raise DataFormatError(path, None, None, "is not a file but a directory")
    if not stat.S_ISREG(mode):
        raise DataFormatError(
            path,
            None,
            None,
            "is not a regular file (a FIFO, socket or device); galrec reads only regular files",
        )
    return path


def read_error(path: Path, error: BaseException, line: int | None = None) -> DataFormatError:
    """A :class:`DataFormatError` naming ``path`` (and the line being read) for an I/O or
    decompression failure, e.g. a truncated gzip stream."""
    reason = (error.strerror if isinstance(error, OSError) else None) or str(error)
    return DataFormatError(path, line, None, f"cannot read: {reason or type(error).__name__}")


def is_gzip(path: Path) -> bool:
    """Whether the file starts with the gzip magic bytes (the extension is not trusted)."""
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


class ArrowInput:
    """A pyarrow input stream over a plain or gzip file that reports progress in file bytes."""

    def __init__(self, path: Path, progress: ProgressFn | None = None) -> None:
        import pyarrow as pa

        require_file(path)
        try:
            gzipped = is_gzip(path)
            self._raw = pa.OSFile(str(path), "rb")
        except READ_ERRORS as error:
            raise read_error(path, error) from None
        self.stream: pa.NativeFile = (
            pa.CompressedInputStream(self._raw, "gzip") if gzipped else self._raw
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
    """Yield ``(line_number, text)`` with the line ending removed; bad bytes name their line,
    and so does a read or gzip failure (the line being read when it failed)."""
    require_file(path)
    reading: int | None = None  # the line being read, once the file is open
    try:
        with open(path, "rb") as raw:
            handle: Iterable[bytes] = gzip.GzipFile(fileobj=raw) if is_gzip(path) else raw
            reported = 0
            reading = 1
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
                reading = number + 1
            if progress is not None:
                progress(raw.tell() - reported)
    except READ_ERRORS as error:
        raise read_error(path, error, reading) from None
