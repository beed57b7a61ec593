"""How many torch threads a run uses when the user does not say: all cores when they are idle,
one fewer for each core other processes keep busy at the start.

Measured (docs/benchmarks.md, benches/bench_threads.py): on the 2-core VM, 2 threads are
1.3-1.7x faster than 1 on a quiet machine and 1.3-2.7x slower as soon as one other process
spins on a core (10-25x on busier VMs), because every parallel region waits for the thread
that shares its core; 1 thread barely notices the competitor. So the count is picked from what
the machine does when the run starts, and printed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

#: How long the machine is watched before a run picks its threads.
SAMPLE_SECONDS = 0.25


@dataclass(frozen=True)
class ThreadChoice:
    """``count`` torch threads, and why (one line for the log)."""

    count: int
    reason: str


def _cpu_times(stat: Path) -> tuple[int, int] | None:
    """(all, idle + iowait) jiffies of the machine from /proc/stat's first line, None where
    the file is missing or not in that format (not Linux)."""
    try:
        fields = stat.read_text().split("\n", 1)[0].split()
        values = [int(v) for v in fields[1:]]
    except (OSError, ValueError):
        return None
    if not fields or fields[0] != "cpu" or len(values) < 5:
        return None
    return sum(values), values[3] + values[4]


def busy_cores(stat: Path = Path("/proc/stat"), seconds: float = SAMPLE_SECONDS) -> float | None:
    """Cores kept busy by other processes, averaged over ``seconds`` (the caller idle in the
    meantime); None where the machine does not say (then the 1-minute load average stands in,
    where there is one)."""
    before = _cpu_times(stat)
    if before is None:
        try:
            return max(0.0, os.getloadavg()[0])
        except OSError:
            return None
    time.sleep(seconds)
    after = _cpu_times(stat)
    if after is None or after[0] <= before[0]:
        return None
    busy = 1.0 - (after[1] - before[1]) / (after[0] - before[0])
    return max(0.0, busy) * (os.cpu_count() or 1)


def pick_threads(
    requested: int, processes_per_machine: int = 1, busy: float | None = None
) -> ThreadChoice:
    """The torch thread count for ``requested`` (``train.threads``, ``--threads``): itself when
    positive; for 0, the machine's cores shared out among this job's ``processes_per_machine``
    (DDP ranks), less the cores other processes keep busy (``busy``, measured by
    :func:`busy_cores` when not given; not measured under DDP, where the other ranks are
    starting too), at least 1."""
    if requested > 0:
        return ThreadChoice(requested, f"{requested} (as set)")
    cores = os.cpu_count() or 1
    share = max(1, cores // max(1, processes_per_machine))
    if processes_per_machine > 1:
        return ThreadChoice(share, f"{share} ({cores} cores shared by {processes_per_machine})")
    if busy is None:
        busy = busy_cores()
    if busy is None:
        return ThreadChoice(share, f"{share} (all cores; the machine's load is not readable)")
    taken = min(share - 1, round(busy))
    if taken <= 0:
        return ThreadChoice(share, f"{share} (all cores; they were idle)")
    count = share - taken
    return ThreadChoice(
        count,
        f"{count} of {cores} (other processes kept {busy:.1f} cores busy; more threads than "
        "free cores stall every step; set train.threads / --threads to choose)",
    )


_chosen: ThreadChoice | None = None


def use_threads(requested: int, processes_per_machine: int = 1) -> ThreadChoice | None:
    """Set torch's thread count for ``requested`` (see :func:`pick_threads`) and return the
    choice, or None when ``requested`` is 0 and this process already made one (a ``compare``
    with ``--threads``, or the first of several runs in one process): a process picks once."""
    global _chosen
    if requested <= 0 and _chosen is not None:
        return None
    choice = pick_threads(requested, processes_per_machine)
    torch.set_num_threads(choice.count)
    _chosen = choice
    return choice
