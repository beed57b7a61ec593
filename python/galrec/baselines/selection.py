"""Model selection while training: keep the best validated state, stop once it stops improving.

Shared by the BPR models (MF, LightGCN) and the sequential ones (SASRec, GRU4Rec), so that all
baselines pick their best epoch and stop by the same rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from galrec.progress import Progress

StateT = TypeVar("StateT")


class EarlyStopping(Generic[StateT]):
    """The best validation value so far, its epoch and a snapshot of the model then.

    Higher values are better; training should stop after ``patience`` validations in a row
    without a strict improvement.
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_value = -1.0
        self.best_epoch = 0
        self.best_state: StateT | None = None
        self.runs_without_gain = 0

    def update(self, epoch: int, value: float, snapshot: Callable[[], StateT]) -> None:
        """Record the validation ``value`` of ``epoch``; ``snapshot`` is called (to copy the
        weights) only when the value beats the best so far."""
        if value > self.best_value:
            self.best_value, self.best_epoch, self.runs_without_gain = value, epoch, 0
            self.best_state = snapshot()
        else:
            self.runs_without_gain += 1

    @property
    def should_stop(self) -> bool:
        """Whether the last ``patience`` validations all failed to improve."""
        return self.runs_without_gain >= self.patience


def epoch_range(epochs: int, progress: bool, desc: str) -> Iterator[int]:
    """Epochs ``1..epochs``, counted by a galrec.progress bar named ``desc`` when ``progress``
    (a terminal bar, or a line every 30 s in a log file)."""
    bar = Progress(epochs, desc=desc, unit="epoch", enabled=progress, leave=False)
    try:
        for epoch in range(1, epochs + 1):
            yield epoch
            bar.update()
    finally:
        bar.close()
