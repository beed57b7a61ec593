"""LightGCN's cost per epoch as the graph grows (the fixed batch against the bounded one), and
its propagation product ``A @ X`` (64 columns) on torch's CSR kernel against galrec's (with and
without its column-ordered blocks).

Every mini-batch propagates over the whole graph, so a fixed batch of 4,096 edges makes an epoch
O(edges^2 / 4096); ``LightGCNConfig.max_propagations`` (default 32) lets the batch grow with the
graph so that an epoch is a bounded number of propagations, O(edges). Graphs: Zipf item
popularity (``galrec.graph.generator.generate_power_law``), 20 edges per user, at 50k, 250k and 1M
edges (20x). torch's CPU CSR product runs on one thread whatever ``torch.get_num_threads()``
says; galrec's (``galrec._core.CsrMatrix``, what LightGCN uses on the CPU) on that many.

    .venv/bin/python -m pytest benches/bench_lightgcn.py --benchmark-only -s

torch runs on ``torch.get_num_threads()`` threads (printed); run it on a quiet machine.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from galrec._core import CsrMatrix
from galrec.baselines import LightGCNConfig, fit_lightgcn
from galrec.baselines.bpr import fit_bpr
from galrec.baselines.lightgcn import LightGCN, Propagation, epoch_batch_size, normalized_adjacency
from galrec.config import default_config
from galrec.graph.generator import generate_power_law

SIZES = {"50k": 50_000, "250k": 250_000, "1M": 1_000_000}
#: The 950k-edge graph with community structure of the run to early stop (community_graph).
COMMUNITY = "950k community"
#: One epoch of the fixed batch at 1M edges takes over a minute: a single round there.
ROUNDS = {"50k": 3, "250k": 2, "1M": 1}


def _edges(num_edges: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    num_users = num_edges // 20
    num_items = max(num_users // 4, 100)
    users, items = generate_power_law(num_users, num_items, num_edges, seed=0)
    return users.astype(np.int64), items.astype(np.int64), num_users, num_items


class _TorchProduct(torch.autograd.Function):
    """``A @ x`` with torch's CSR kernel, backward ``A @ grad`` (``A`` symmetric)."""

    @staticmethod
    def forward(ctx: Any, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return adjacency @ x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.adjacency @ grad


class TorchLightGCN(LightGCN):
    """The baseline: LightGCN as it was before galrec's kernel (November 30), torch's CSR product
    and autograd through the unrolled layers."""

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.user_ego, self.item_ego])
        layers = [x]
        for _ in range(self.num_layers):
            layers.append(_TorchProduct.apply(self.propagation.adjacency, layers[-1]))
        final = functools.reduce(torch.add, layers) / (self.num_layers + 1)
        return final.split([self.user_ego.shape[0], self.item_ego.shape[0]])


def _epoch(model: type[LightGCN], edges: tuple, config: LightGCNConfig) -> None:
    users, items, num_users, num_items = edges
    net = model(normalized_adjacency(users, items, num_users, num_items), num_users, num_items,
                config.dim, config.num_layers, config.seed)  # fmt: skip
    batched = replace(config, batch_size=epoch_batch_size(len(users), config))
    fit_bpr(net, users, items, batched)


#: (model, max_propagations): the fixed batch, the bounded one, the bounded one before the kernel.
VARIANTS = {
    "fixed batch": (LightGCN, 0),
    "bounded batch": (LightGCN, 32),
    "bounded batch, torch autograd (before)": (TorchLightGCN, 32),
}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_lightgcn_epoch(benchmark, throughput, size: str, variant: str) -> None:
    model, max_propagations = VARIANTS[variant]
    config = LightGCNConfig(
        epochs=1, batch_size=4096, lr=1e-2, eval_every=1000, max_propagations=max_propagations
    )
    edges = _edges(SIZES[size])
    benchmark.pedantic(_epoch, args=(model, edges, config), rounds=ROUNDS[size])
    name = f"LightGCN epoch, {size} edges, {variant} ({torch.get_num_threads()} thr)"
    throughput[name] = (benchmark.stats.stats.median, "s/epoch")


@pytest.mark.parametrize("size", [*SIZES, COMMUNITY])
@pytest.mark.parametrize("kernel", ["torch", "galrec, row order", "galrec"])
def test_propagation_product(benchmark, throughput, size: str, kernel: str) -> None:
    """torch's product; galrec's with every block summed row by row (``column_order=False``);
    galrec's as LightGCN runs it (blocks whose sources exceed the cache in column order). On
    the power-law graphs and on the community graph of the run to early stop."""
    if size == COMMUNITY:
        users, items, _, num_users, num_items = _community_graph_cached()
    else:
        users, items, num_users, num_items = _edges(SIZES[size])
    adjacency = normalized_adjacency(users, items, num_users, num_items)
    x = torch.randn(adjacency.shape[0], 64, generator=torch.Generator().manual_seed(0))
    if kernel == "torch":

        def product() -> torch.Tensor:
            return adjacency @ x

    else:
        matrix = CsrMatrix(
            *adjacency.shape,
            adjacency.crow_indices().numpy(),
            adjacency.col_indices().numpy(),
            adjacency.values().numpy(),
            column_order=kernel == "galrec",
        )
        out = np.empty(tuple(x.shape), np.float32)
        product = functools.partial(
            matrix.matmul, x.numpy(), out=out, num_threads=torch.get_num_threads()
        )
        product()
        assert torch.equal(torch.from_numpy(out), Propagation(adjacency)(x))
    benchmark.pedantic(product, rounds=20, warmup_rounds=2)
    name = f"A @ X (64 columns), {size} edges, {kernel} ({torch.get_num_threads()} thr)"
    throughput[name] = (benchmark.stats.stats.median * 1e3, "ms")


@functools.cache
def _community_graph_cached() -> tuple[np.ndarray, np.ndarray, Any, int, int]:
    return community_graph()


def community_graph(
    num_users: int = 50_000, num_items: int = 12_500, per_user: int = 20, communities: int = 50
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray], int, int]:
    """Training edges, one validation edge per user, and the counts: each user takes 70% of
    their items from their community's pool and the rest by global popularity (Zipf 0.8)."""
    rng = np.random.default_rng(0)
    item_community = rng.integers(0, communities, num_items)
    user_community = rng.integers(0, communities, num_users)
    popularity = 1.0 / np.arange(1, num_items + 1) ** 0.8
    popularity = popularity[rng.permutation(num_items)]
    pools = [np.flatnonzero(item_community == c) for c in range(communities)]
    own = round(per_user * 0.7)
    users, items = [], []
    for user in range(num_users):
        pool = pools[user_community[user]]
        chosen = rng.choice(pool, own, replace=False, p=popularity[pool] / popularity[pool].sum())
        extra = rng.choice(num_items, per_user * 2, p=popularity / popularity.sum())
        extra = np.setdiff1d(np.unique(extra), chosen)[: per_user - own]
        users.append(np.full(own + len(extra), user))
        items.append(np.concatenate([chosen, extra]))
    order = rng.permutation(sum(map(len, users)))
    all_users, all_items = np.concatenate(users)[order], np.concatenate(items)[order]
    _, first = np.unique(all_users, return_index=True)
    train = np.ones(len(all_users), dtype=bool)
    train[first] = False
    valid = (all_users[first], all_items[first])
    return all_users[train], all_items[train], valid, num_users, num_items


@pytest.mark.skipif(
    not os.environ.get("GALREC_BENCH_EARLY_STOP"), reason="set GALREC_BENCH_EARLY_STOP=1"
)
@pytest.mark.parametrize("scale_lr", [True, False])
def test_lightgcn_to_early_stop(throughput, scale_lr: bool) -> None:
    users, items, valid, num_users, num_items = community_graph()
    config = LightGCNConfig.from_dict({**default_config("lightgcn"), "scale_lr": scale_lr})
    start = time.perf_counter()
    fit = fit_lightgcn(users, items, num_users, num_items, config, valid)
    seconds = time.perf_counter() - start
    curve = [
        (int(r["epoch"]), round(r["valid_ndcg@10"], 4)) for r in fit.history if "valid_ndcg@10" in r
    ]
    print(f"scale_lr={scale_lr}: validation NDCG@10 by epoch {curve}")
    name = (
        f"LightGCN to early stop, 950k edges, scale_lr={scale_lr} ({torch.get_num_threads()} thr)"
    )
    throughput[name] = (seconds, f"s (best epoch {fit.best_epoch} of {len(fit.history)}, "
                                 f"valid NDCG@10 {max(v for _, v in curve):.4f})")  # fmt: skip
