"""LightGCN (He et al., SIGIR 2020) with sparse propagation in torch.

Besides being a baseline, its final embeddings are GAL-Rec's collaborative features ``c_v``:
:func:`train_lightgcn` is the function the external-embedding code calls.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from galrec.baselines.bpr import BaselineFit, BPRConfig, EmbeddingNet, fit_bpr


@dataclass
class LightGCNConfig(BPRConfig):
    """BPR hyperparameters plus the number of propagation layers.

    Every mini-batch propagates over the whole graph (O(edges)), so with a fixed batch an epoch
    costs O(edges^2 / batch). ``max_propagations`` bounds the batches per epoch: past
    ``batch_size * max_propagations`` training edges the batch grows with the graph, and an
    epoch stays O(edges). Graphs below that size (ml-100k: 24 batches of 4,096) train exactly as
    with the fixed batch. 0 keeps the batch fixed.
    """

    num_layers: int = 3
    max_propagations: int = 32


def epoch_batch_size(num_edges: int, config: LightGCNConfig) -> int:
    """The batch size of one epoch over ``num_edges``: ``batch_size``, or larger so that an
    epoch holds at most ``max_propagations`` batches."""
    if config.max_propagations <= 0:
        return config.batch_size
    return max(config.batch_size, math.ceil(num_edges / config.max_propagations))


def normalized_adjacency(
    users: np.ndarray, items: np.ndarray, num_users: int, num_items: int
) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the bipartite graph (users first), sparse CSR, duplicates merged."""
    keys = np.unique(np.asarray(users, np.int64) * num_items + np.asarray(items, np.int64))
    u, i = np.divmod(keys, num_items)
    user_degree = np.bincount(u, minlength=num_users).astype(np.float64)
    item_degree = np.bincount(i, minlength=num_items).astype(np.float64)
    weight = 1.0 / np.sqrt(user_degree[u] * item_degree[i])
    rows = np.concatenate([u, num_users + i])
    cols = np.concatenate([num_users + i, u])
    size = num_users + num_items
    adjacency = torch.sparse_coo_tensor(
        torch.from_numpy(np.stack([rows, cols])),
        torch.from_numpy(np.concatenate([weight, weight]).astype(np.float32)),
        (size, size),
        check_invariants=True,
    )
    with warnings.catch_warnings():  # "sparse CSR support is in beta": we use only matmul
        warnings.simplefilter("ignore", UserWarning)
        return adjacency.coalesce().to_sparse_csr()


class _SymmetricPropagate(torch.autograd.Function):
    """``A @ x`` for a symmetric sparse ``A``: the backward pass is ``A @ grad`` as well.

    torch's generic backward transposes the CSR matrix on every call, which costs more than
    the product itself.
    """

    @staticmethod
    def forward(ctx: Any, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return adjacency @ x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.adjacency @ grad


class LightGCN(EmbeddingNet):
    """Final embeddings: the mean of the ego embeddings and their 1..L-hop propagations."""

    def __init__(
        self,
        adjacency: torch.Tensor,
        num_users: int,
        num_items: int,
        dim: int,
        layers: int,
        seed: int = 0,
    ) -> None:
        super().__init__(num_users, num_items, dim, seed)
        self.register_buffer("adjacency", adjacency, persistent=False)
        self.num_layers = layers

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([self.user_ego, self.item_ego])
        total = x
        for _ in range(self.num_layers):
            x = _SymmetricPropagate.apply(self.adjacency, x)
            total = total + x
        final = total / (self.num_layers + 1)
        return final[: self.user_ego.shape[0]], final[self.user_ego.shape[0] :]


def fit_lightgcn(
    train_users: np.ndarray,
    train_items: np.ndarray,
    num_users: int,
    num_items: int,
    config: LightGCNConfig | None = None,
    valid: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = False,
) -> BaselineFit:
    """Train LightGCN with BPR on the training edges; early-stops on ``valid`` when given."""
    config = config or LightGCNConfig()
    adjacency = normalized_adjacency(train_users, train_items, num_users, num_items)
    model = LightGCN(adjacency, num_users, num_items, config.dim, config.num_layers, config.seed)
    batched = replace(config, batch_size=epoch_batch_size(len(train_users), config))
    return fit_bpr(model, train_users, train_items, batched, valid, progress)


def train_lightgcn(
    train_users: np.ndarray,
    train_items: np.ndarray,
    num_users: int,
    num_items: int,
    config: LightGCNConfig | None = None,
    valid: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """LightGCN's final ``(user_emb [num_users, dim], item_emb [num_items, dim])``, float32.

    Only the given edges are used, so pass training edges only (validation edges, if given, only
    pick the best epoch). This is the collaborative feature source of GAL-Rec's ID embeddings.
    """
    fit = fit_lightgcn(train_users, train_items, num_users, num_items, config, valid)
    return fit.user_emb.numpy(), fit.item_emb.numpy()
