"""Progress on stderr that suits where stderr goes.

On a terminal, a tqdm bar. In a log file or a pipe a redrawn bar writes thousands of updates
into one line, so there :class:`Progress` writes a whole line at most every
:data:`LINE_INTERVAL_S` seconds and one when it closes. :func:`phase` says how long a setup step
took (text features, LightGCN, the score prior), which otherwise leaves stderr silent for
seconds to minutes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm

#: Seconds between two progress lines when stderr is not a terminal.
LINE_INTERVAL_S = 30.0


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Progress:
    """Units of work (steps, epochs) counted towards ``total``; nothing at all unless
    ``enabled``."""

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        unit: str,
        initial: int = 0,
        enabled: bool = True,
        leave: bool = True,
        unit_scale: bool = False,
    ) -> None:
        """``initial``: units already done (a resumed run); ``leave``: keep the terminal bar
        once closed; ``unit_scale``: counts as k, M, G (bytes)."""
        self.total, self.desc, self.unit = total, desc, unit
        self.initial = self.count = initial
        self.enabled = enabled
        self.unit_scale = unit_scale
        self.started = self.last_line = time.perf_counter()
        self.postfix: dict[str, str] = {}
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            self.bar = tqdm(
                total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                leave=leave, unit_scale=unit_scale,
            )  # fmt: skip

    def update(self, n: int = 1, **postfix: str) -> None:
        """``n`` more units done; ``postfix``: values shown beside the count (loss ...)."""
        self.count += n
        self.postfix = postfix or self.postfix
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix)
        elif self.enabled and time.perf_counter() - self.last_line >= LINE_INTERVAL_S:
            self._line()

    def close(self) -> None:
        """Close the bar, or write the last line (when any unit was done)."""
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.count > self.initial:
            self._line()

    def _line(self) -> None:
        now = time.perf_counter()
        self.last_line = now
        seconds = now - self.started
        rate = (self.count - self.initial) / max(seconds, 1e-9)
        if self.unit_scale:
            count, total, speed = (tqdm.format_sizeof(n) for n in (self.count, self.total, rate))
        else:
            count, total, speed = str(self.count), str(self.total), f"{rate:.3g}"
        parts = [
            f"{self.desc}: {self.unit} {count}/{total}",
            f"{seconds:.0f} s",
            f"{speed} {self.unit}/s",
            *(f"{key} {value}" for key, value in self.postfix.items()),
        ]
        _say(", ".join(parts))


@contextmanager
def phase(what: str, enabled: bool = True) -> Iterator[None]:
    """Write ``setup: <what>: <seconds> s`` to stderr once the block has run (if ``enabled``)."""
    started = time.perf_counter()
    yield
    if enabled:
        _say(f"setup: {what}: {time.perf_counter() - started:.1f} s")
