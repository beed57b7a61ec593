"""Frozen scorers: popularity counts and dot products of user/item embedding tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file


class PopularityScorer:
    """Recommends the most-consumed training items to everyone (the floor every model must beat).

    Ties in the count are broken by the lower item id, so rankings are deterministic.
    """

    def __init__(self, item_counts: np.ndarray) -> None:
        counts = np.asarray(item_counts, dtype=np.int64)
        self.num_items = len(counts)
        order = np.lexsort((np.arange(self.num_items), -counts))
        scores = np.empty(self.num_items, dtype=np.float32)
        scores[order] = np.arange(self.num_items, 0, -1, dtype=np.float32)
        self.item_counts = counts
        self._scores = torch.from_numpy(scores)

    @classmethod
    def fit(cls, train_items: np.ndarray, num_items: int) -> PopularityScorer:
        """Count each item's training interactions."""
        return cls(np.bincount(np.asarray(train_items, dtype=np.int64), minlength=num_items))

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        scores = self._scores.to(users.device)
        return scores.unsqueeze(0).expand(len(users), -1)

    def save(self, path: str | Path) -> None:
        save_file({"item_counts": torch.from_numpy(self.item_counts)}, str(path))

    @classmethod
    def load(cls, path: str | Path) -> PopularityScorer:
        return cls(load_file(str(path))["item_counts"].numpy())


class EmbeddingScorer:
    """Scores ``<user_emb[u], item_emb[i]>``; exposes the tables for analysis."""

    def __init__(
        self, user_emb: torch.Tensor | np.ndarray, item_emb: torch.Tensor | np.ndarray
    ) -> None:
        user = torch.as_tensor(user_emb, dtype=torch.float32).detach()
        item = torch.as_tensor(item_emb, dtype=torch.float32).detach()
        if user.ndim != 2 or item.ndim != 2 or user.shape[1] != item.shape[1]:
            raise ValueError(
                f"embedding tables must be [n, dim] with one dim, got {tuple(user.shape)} "
                f"and {tuple(item.shape)}"
            )
        self._user = user
        self._item = item
        self.num_users, self.num_items = user.shape[0], item.shape[0]

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        if self._item.device != users.device:
            self._user, self._item = self._user.to(users.device), self._item.to(users.device)
        return self._user[users] @ self._item.T

    def user_embeddings(self) -> torch.Tensor:
        return self._user

    def item_embeddings(self) -> torch.Tensor:
        return self._item

    def save(self, path: str | Path) -> None:
        save_file(
            {"user": self._user.cpu().contiguous(), "item": self._item.cpu().contiguous()},
            str(path),
        )

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingScorer:
        tables = load_file(str(path))
        return cls(tables["user"], tables["item"])
