"""LightGCN's cost per epoch as the graph grows: the fixed batch against the bounded one.

Every mini-batch propagates over the whole graph, so a fixed batch of 4,096 edges makes an epoch
O(edges^2 / 4096); ``LightGCNConfig.max_propagations`` (default 32) lets the batch grow with the
graph so that an epoch is a bounded number of propagations, O(edges). Graphs: Zipf item
popularity (``galrec.graph.generator.generate_power_law``), 20 edges per user, at 50k, 250k and 1M
edges (20x).

    .venv/bin/python -m pytest benches/bench_lightgcn.py --benchmark-only -s

torch runs on ``torch.get_num_threads()`` threads (printed); run it on a quiet machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from galrec.baselines import LightGCNConfig, fit_lightgcn
from galrec.graph.generator import generate_power_law

SIZES = {"50k": 50_000, "250k": 250_000, "1M": 1_000_000}
#: One epoch of the fixed batch at 1M edges takes over a minute: a single round there.
ROUNDS = {"50k": 3, "250k": 2, "1M": 1}


def _edges(num_edges: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    num_users = num_edges // 20
    num_items = max(num_users // 4, 100)
    users, items = generate_power_law(num_users, num_items, num_edges, seed=0)
    return users.astype(np.int64), items.astype(np.int64), num_users, num_items


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("batching", ["fixed", "bounded"])
def test_lightgcn_epoch(benchmark, throughput, size: str, batching: str) -> None:
    users, items, num_users, num_items = _edges(SIZES[size])
    config = LightGCNConfig(
        epochs=1, batch_size=4096, lr=1e-2, eval_every=1000,
        max_propagations=0 if batching == "fixed" else 32,
    )  # fmt: skip
    benchmark.pedantic(
        fit_lightgcn, args=(users, items, num_users, num_items, config), rounds=ROUNDS[size]
    )
    name = f"LightGCN epoch, {size} edges, {batching} batch ({torch.get_num_threads()} thr)"
    throughput[name] = (benchmark.stats.stats.median, "s/epoch")
