"""The GAL-Rec objective (METHOD.md section 3): L0 over all items and InfoNCE terms L1..L3.

InfoNCE here: cosine similarity of L2-normalised vectors over a temperature; the positive is the
momentum key of the same row; negatives are the other rows' keys plus the queue's keys, minus any
key that belongs to the positive's own node (a node is never its own negative).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(
    query: torch.Tensor,
    key: torch.Tensor,
    key_ids: torch.Tensor,
    temperature: float,
    queue_keys: torch.Tensor | None = None,
    queue_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean InfoNCE of ``query[b]`` against positive ``key[b]`` (both [B, d], normalised).

    ``key_ids`` [B] is the node behind each positive key. Negatives for row b: ``key[j]`` for
    j != b and every queue key, except those whose node id equals ``key_ids[b]``.
    """
    if query.shape != key.shape:
        raise ValueError(f"info_nce: query {tuple(query.shape)} and key {tuple(key.shape)} differ")
    candidates, cand_ids = key, key_ids
    if queue_keys is not None and queue_ids is not None and queue_keys.shape[0] > 0:
        candidates = torch.cat([key, queue_keys.to(key.dtype)], dim=0)
        cand_ids = torch.cat([key_ids, queue_ids.to(key_ids.device)], dim=0)
    logits = query @ candidates.T / temperature  # [B, B + Q]; column b is row b's positive
    batch = query.shape[0]
    own = key_ids[:, None] == cand_ids[None, :]
    own[torch.arange(batch), torch.arange(batch)] = False
    logits = logits.masked_fill(own, float("-inf"))
    return F.cross_entropy(logits, torch.arange(batch, device=query.device))


def recommendation_loss(user_scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """L0: softmax cross-entropy of the target item over all items ([B, num_items] scores)."""
    return F.cross_entropy(user_scores, targets)
