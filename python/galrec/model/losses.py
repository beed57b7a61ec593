"""The GAL-Rec objective (docs/method.md): L0 over all items and InfoNCE terms L1..L3.

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


def recommendation_loss(
    user_scores: torch.Tensor, targets: torch.Tensor, seen: torch.Tensor | None = None
) -> torch.Tensor:
    """L0: softmax cross-entropy of the target items over all items ([B, num_items] scores).

    ``targets`` is [B] (one item per row) or [B, m] with -1 padding: several targets per row
    make a multinomial likelihood, each row the mean of its targets' log-probabilities (every
    row weighs the same). ``seen`` [B, num_items] (bool) marks items left out of the softmax:
    those the user already consumed before the target, which evaluation masks as well.
    """
    if targets.ndim == 1:
        targets = targets[:, None]
    valid = targets >= 0
    if not bool(valid.any(1).all()):
        raise ValueError("recommendation_loss: every row needs at least one target item")
    scores = user_scores if seen is None else user_scores.masked_fill(seen, float("-inf"))
    log_probs = F.log_softmax(scores, dim=1).gather(1, targets.clamp_min(0))
    per_row = torch.where(valid, log_probs, 0.0).sum(1) / valid.sum(1)
    return -per_row.mean()
