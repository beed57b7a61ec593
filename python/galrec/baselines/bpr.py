"""BPR training shared by MF and LightGCN: negative sampling, the loss, early stopping.

A model is an ``nn.Module`` whose ``forward()`` returns the final user and item tables and whose
``ego`` tables (``user_ego``, ``item_ego``) are the trained parameters the L2 penalty applies to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from galrec.baselines.options import BaselineConfig
from galrec.baselines.scorers import EmbeddingScorer
from galrec.baselines.selection import EarlyStopping, epoch_range
from galrec.evaluation.evaluate import UserItemSets, rank_users, resolve_device


@dataclass
class BPRConfig(BaselineConfig):
    """Hyperparameters of a BPR-trained embedding model (defaults follow RecBole's)."""

    dim: int = 64
    epochs: int = 300
    batch_size: int = 2048
    lr: float = 1e-3
    reg: float = 1e-4  # L2 on the batch's ego embeddings, as in the LightGCN paper
    eval_every: int = 5  # epochs between validation runs (early stopping, training curves)
    patience: int = 5  # validation runs without improvement before stopping
    eval_metric: str = "ndcg@10"
    seed: int = 0
    device: str = "auto"


class EmbeddingNet(nn.Module):
    """Base of the BPR models: ego tables initialised N(0, 0.1) like LightGCN's reference code."""

    def __init__(self, num_users: int, num_items: int, dim: int, seed: int = 0) -> None:
        super().__init__()
        # A private generator: the initialisation depends on the seed only, never on what
        # else ran in the process before (the order of models in a comparison).
        generator = torch.Generator().manual_seed(seed)
        self.user_ego = nn.Parameter(0.1 * torch.randn(num_users, dim, generator=generator))
        self.item_ego = nn.Parameter(0.1 * torch.randn(num_items, dim, generator=generator))

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_ego, self.item_ego


@dataclass
class BaselineFit:
    """The outcome of training: the best embeddings and the per-epoch history."""

    user_emb: torch.Tensor
    item_emb: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0

    def scorer(self) -> EmbeddingScorer:
        return EmbeddingScorer(self.user_emb, self.item_emb)


class _GatherRows(torch.autograd.Function):
    """``table[index]`` whose backward sums the rows' gradients with ``index_add_``: in index
    order at any thread count. torch's own backward (``index_put_`` with ``accumulate``) adds
    in thread order with two or more threads, so training was only repeatable on one; on one
    thread both sum in index order and give the same bits."""

    @staticmethod
    def forward(ctx: Any, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.rows = table.shape[0]
        return table.index_select(0, index)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (index,) = ctx.saved_tensors
        total = grad.new_zeros((ctx.rows, *grad.shape[1:]))
        return total.index_add_(0, index, grad), None


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for a 1-D ``index``, with a backward that is deterministic on any
    number of threads (:class:`_GatherRows`)."""
    return _GatherRows.apply(table, index)


class NegativeSampler:
    """Uniform negatives for BPR, redrawn while they hit one of the user's training items."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, num_items: int) -> None:
        self.num_items = num_items
        self.positive_keys = torch.unique(users * num_items + items)  # sorted

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * self.num_items + items
        where = torch.searchsorted(self.positive_keys, keys).clamp(max=len(self.positive_keys) - 1)
        return self.positive_keys[where] == keys

    def sample(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One negative per entry of ``users``; gives up after 50 redraws (a user owning nearly
        every item), so a clash survives with probability at most ``density ** 50``."""
        negatives = torch.randint(
            self.num_items, users.shape, generator=generator, device=users.device
        )
        clashing = torch.nonzero(self.is_positive(users, negatives)).squeeze(1)
        for _ in range(50):
            if len(clashing) == 0:
                break
            redrawn = torch.randint(
                self.num_items, clashing.shape, generator=generator, device=users.device
            )
            negatives[clashing] = redrawn
            clashing = clashing[self.is_positive(users[clashing], redrawn)]
        return negatives


def fit_bpr(
    model: EmbeddingNet,
    train_users: np.ndarray,
    train_items: np.ndarray,
    config: BPRConfig,
    valid: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = False,
) -> BaselineFit:
    """Train ``model`` with BPR on the training edges, early-stopping on ``valid`` when given.

    The returned embeddings are those of the best validation run (the last epoch without
    ``valid``). Deterministic for a given ``config.seed`` on CPU, at any thread count.
    """
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    num_users, num_items = model.user_ego.shape[0], model.item_ego.shape[0]
    model = model.to(device)
    users = torch.as_tensor(np.asarray(train_users), dtype=torch.int64, device=device)
    items = torch.as_tensor(np.asarray(train_items), dtype=torch.int64, device=device)
    sampler = NegativeSampler(users, items, num_items)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train_sets = UserItemSets.from_pairs(train_users, train_items, num_users, num_items)
    valid_sets = (
        None if valid is None else UserItemSets.from_pairs(valid[0], valid[1], num_users, num_items)
    )
    k = int(config.eval_metric.split("@")[1])
    history: list[dict[str, float]] = []
    stopping: EarlyStopping[tuple[torch.Tensor, torch.Tensor]] = EarlyStopping(config.patience)
    start = time.perf_counter()
    for epoch in epoch_range(config.epochs, progress, type(model).__name__):
        model.train()
        order = torch.randperm(len(users), generator=generator, device=device)
        total = 0.0
        for batch in order.split(config.batch_size):
            u, pos = users[batch], items[batch]
            neg = sampler.sample(u, generator)
            user_all, item_all = model()
            u_emb = gather_rows(user_all, u)
            p_emb, n_emb = gather_rows(item_all, pos), gather_rows(item_all, neg)
            loss = -nn.functional.logsigmoid((u_emb * p_emb).sum(1) - (u_emb * n_emb).sum(1)).mean()
            ego = (
                gather_rows(model.user_ego, u).pow(2).sum()
                + gather_rows(model.item_ego, pos).pow(2).sum()
                + gather_rows(model.item_ego, neg).pow(2).sum()
            )
            loss = loss + config.reg * ego / (2 * len(batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        record = {"epoch": float(epoch), "loss": total / len(users)}
        if valid_sets is not None and (epoch % config.eval_every == 0 or epoch == config.epochs):
            model.eval()
            with torch.no_grad():
                user_all, item_all = model()
            result = rank_users(
                EmbeddingScorer(user_all, item_all),
                valid_sets,
                train_sets,
                ks=(k,),
                split="valid",
                device=device,
            )
            value = result.metrics[config.eval_metric]
            record[f"valid_{config.eval_metric}"] = value
            # update() calls the snapshot at once (only on a gain), so the late binding is moot.
            stopping.update(
                epoch,
                value,
                lambda: (user_all.detach().clone(), item_all.detach().clone()),  # noqa: B023
            )
        record["seconds"] = time.perf_counter() - start
        history.append(record)
        if valid_sets is not None and stopping.should_stop:
            break
    best_tables, best_epoch = stopping.best_state, stopping.best_epoch
    if best_tables is None:
        model.eval()
        with torch.no_grad():
            best_tables = model()
        best_epoch = len(history)
    user_emb, item_emb = best_tables
    return BaselineFit(
        user_emb=user_emb.cpu(),
        item_emb=item_emb.cpu(),
        history=history,
        best_epoch=best_epoch,
        seconds=time.perf_counter() - start,
    )
