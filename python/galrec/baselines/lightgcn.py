"""LightGCN (He et al., SIGIR 2020): sparse propagation on galrec's parallel Rust kernel (CPU).

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

from galrec._core import CsrMatrix
from galrec.baselines.bpr import BaselineFit, BPRConfig, EmbeddingNet, fit_bpr


@dataclass
class LightGCNConfig(BPRConfig):
    """BPR hyperparameters plus the number of propagation layers.

    Every mini-batch propagates over the whole graph (O(edges)), so with a fixed batch an epoch
    costs O(edges^2 / batch). ``max_propagations`` bounds the batches per epoch: past
    ``batch_size * max_propagations`` training edges the batch grows with the graph, and an
    epoch stays O(edges). Graphs below that size (ml-100k: 24 batches of 4,096) train exactly as
    with the fixed batch. 0 keeps the batch fixed.

    ``scale_lr``: when the batch grows by a factor ``g``, multiply Adam's learning rate by
    ``sqrt(g)`` (the square-root rule for adaptive optimisers). A trade, so off by default: on
    a 950k-edge graph it peaked at epoch 10 instead of 25 and stopped 1.6x sooner, at 1.2%
    lower validation NDCG@10 (0.1494 against 0.1512; docs/benchmarks.md).
    """

    num_layers: int = 3
    max_propagations: int = 32
    scale_lr: bool = False


def epoch_learning_rate(num_edges: int, config: LightGCNConfig) -> float:
    """Adam's learning rate for the epoch batch: ``lr``, times ``sqrt(batch growth)`` when the
    batch grew past ``batch_size`` and ``scale_lr`` is on."""
    growth = epoch_batch_size(num_edges, config) / config.batch_size
    return config.lr * math.sqrt(growth) if config.scale_lr else config.lr


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


class Propagation:
    """Products ``A @ x`` with a sparse matrix: on the CPU galrec's Rust kernel
    (``galrec._core.CsrMatrix``), elsewhere torch's own.

    torch's CPU product of a CSR matrix runs on one thread; the kernel runs on
    ``torch.get_num_threads()`` and computes each row as a chain of fused multiply-adds in stored
    order. That is what torch's (MKL's) product computed at LightGCN's 64 dimensions on the
    Xeon the change was measured on, so the tables trained there came out unchanged bit for
    bit (docs/benchmarks.md); at some widths (8, 16) MKL sums in another order and the two
    differ by rounding.

    A product can write into (or add to) a given tensor, and :meth:`scratch` keeps reusable
    work tensors: at a million edges a fresh ``[nodes, 64]`` tensor per product costs more in
    page faults than the additions it holds.
    """

    def __init__(self, adjacency: torch.Tensor) -> None:
        self.adjacency = adjacency
        self.kernel = CsrMatrix(
            adjacency.shape[0],
            adjacency.shape[1],
            adjacency.crow_indices().cpu().numpy(),
            adjacency.col_indices().cpu().numpy(),
            adjacency.values().cpu().numpy(),
        )
        self._scratch: dict[int, torch.Tensor] = {}

    def __call__(
        self, x: torch.Tensor, out: torch.Tensor | None = None, accumulate: bool = False
    ) -> torch.Tensor:
        """``A @ x``; written into ``out`` when given (which must not overlap ``x``), or added
        to it when ``accumulate``: ``out + (A @ x)`` rounded as the two steps would be."""
        if x.device.type != "cpu" or x.dtype != torch.float32:
            if self.adjacency.device != x.device:  # moved once, on the first product there
                self.adjacency = self.adjacency.to(x.device)
            product = self.adjacency @ x
            if out is None:
                return product
            return out.add_(product) if accumulate else out.copy_(product)
        result = self.kernel.matmul(
            x.contiguous().numpy(),
            out=None if out is None else out.numpy(),
            accumulate=accumulate,
            num_threads=torch.get_num_threads(),
        )
        return torch.from_numpy(result) if out is None else out

    def scratch(self, slot: int, like: torch.Tensor) -> torch.Tensor:
        """A work tensor shaped like ``like``, the same one on every call with this ``slot``
        (contents undefined): never hand it out of the computation that borrowed it."""
        held = self._scratch.get(slot)
        if (
            held is None
            or held.shape != like.shape
            or held.dtype != like.dtype
            or held.device != like.device
        ):
            held = torch.empty_like(like, memory_format=torch.contiguous_format)
            self._scratch[slot] = held
        return held


class _LayerMean(torch.autograd.Function):
    """LightGCN's final tables ``(x + A x + ... + A^L x) / (L + 1)`` of ``x = [users; items]``.

    For a symmetric ``A`` the gradient is the same operator applied to the incoming gradient
    ``g``, in Horner form (``h <- g / (L + 1) + A h``): the very sums, of two terms each, that
    autograd forms through the unrolled layers, so the result is bit-identical, without
    keeping every layer's output or building each slice's zero-padded gradient. Both passes
    sum in place into the tensor they return and keep their layers in the propagation's
    scratch tensors, so a step allocates two tables, not a dozen.
    """

    @staticmethod
    def forward(
        ctx: Any,
        propagate: Propagation,
        user_ego: torch.Tensor,
        item_ego: torch.Tensor,
        layers: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.propagate, ctx.layers, ctx.num_users = propagate, layers, user_ego.shape[0]
        total = torch.cat([user_ego, item_ego])  # x, then the running sum
        x = total
        for layer in range(1, layers + 1):
            if layer < layers:
                x = propagate(x, out=propagate.scratch(layer % 2, total))
                total.add_(x)
            else:
                if x is total:  # one layer: its product reads x, which the sum overwrites
                    x = propagate.scratch(0, total).copy_(total)
                propagate(x, out=total, accumulate=True)
        total.div_(layers + 1)
        return total[: ctx.num_users], total[ctx.num_users :]

    @staticmethod
    def backward(
        ctx: Any, user_grad: torch.Tensor, item_grad: torch.Tensor
    ) -> tuple[None, torch.Tensor, torch.Tensor, None]:
        propagate, layers = ctx.propagate, ctx.layers
        share = torch.cat([user_grad, item_grad]).div_(layers + 1)
        grad = share
        for layer in range(1, layers + 1):
            if layer < layers:
                target = propagate.scratch(layer % 2, share).copy_(share)
                grad = propagate(grad, out=target, accumulate=True)
            else:  # the last step sums into `share`, the tensor returned
                if grad is share:  # one layer: its product reads `share`
                    grad = propagate.scratch(0, share).copy_(share)
                grad = propagate(grad, out=share, accumulate=True)
        return None, grad[: ctx.num_users], grad[ctx.num_users :], None


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
        self.propagation = Propagation(adjacency)
        self.num_layers = layers

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return _LayerMean.apply(self.propagation, self.user_ego, self.item_ego, self.num_layers)


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
    batched = replace(
        config,
        batch_size=epoch_batch_size(len(train_users), config),
        lr=epoch_learning_rate(len(train_users), config),
    )
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
