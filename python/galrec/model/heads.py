"""Small trainable heads on top of the pooled backbone state h (docs/method.md)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RepresentationHead(nn.Module):
    """``z = normalize(MLP(h))``: the vector every InfoNCE term compares."""

    def __init__(self, hidden_size: int, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, dim)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Unit-norm representations [B, dim] of pooled states [B, hidden]."""
        return F.normalize(self.mlp(h), dim=-1)


class ItemScorer(nn.Module):
    """L0 head: ``score(u, i) = <W h_u, E_i>`` for every item i at once."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, h_users: torch.Tensor, item_matrix: torch.Tensor) -> torch.Tensor:
        """Scores [B, num_items] of users' pooled states [B, H] against item embeddings [N, H]."""
        return self.proj(h_users) @ item_matrix.T
