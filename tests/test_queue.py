"""The per-type key queue: FIFO order, wrap-around, ids kept beside keys."""

from __future__ import annotations

import pytest
import torch
from galrec.model.queue import KeyQueue, TypedQueues


def keys(*values: float) -> torch.Tensor:
    return torch.tensor([[v, 0.0] for v in values])


def test_fifo_fill_and_wrap():
    q = KeyQueue(size=4, dim=2)
    assert q.filled == 0 and q.contents()[0].shape == (0, 2)
    q.enqueue(keys(1, 2, 3), torch.tensor([10, 11, 12]))
    assert q.filled == 3
    q.enqueue(keys(4, 5), torch.tensor([13, 14]))  # 1 is the oldest and drops out
    k, ids = q.contents()
    assert ids.tolist() == [11, 12, 13, 14]
    assert k[:, 0].tolist() == [2, 3, 4, 5]
    assert q.filled == 4


def test_enqueue_more_than_size_keeps_newest():
    q = KeyQueue(size=3, dim=2)
    q.enqueue(keys(1, 2, 3, 4, 5), torch.arange(5))
    k, ids = q.contents()
    assert ids.tolist() == [2, 3, 4]
    assert k[:, 0].tolist() == [3, 4, 5]


def test_enqueued_keys_are_detached_copies():
    q = KeyQueue(size=2, dim=2)
    src = keys(1, 2).requires_grad_()
    q.enqueue(src, torch.tensor([0, 1]))
    assert not q.contents()[0].requires_grad


def test_state_dict_round_trip():
    q = KeyQueue(size=3, dim=2)
    q.enqueue(keys(1, 2), torch.tensor([7, 8]))
    r = KeyQueue(size=3, dim=2)
    r.load_state_dict(q.state_dict())
    r.enqueue(keys(3, 4), torch.tensor([9, 10]))
    assert r.contents()[1].tolist() == [8, 9, 10]


def test_typed_queues_are_separate():
    tq = TypedQueues(size=2, dim=2)
    tq.of("user").enqueue(keys(1), torch.tensor([0]))
    assert tq.of("user").filled == 1 and tq.of("item").filled == 0
    with pytest.raises(ValueError, match="'user' or 'item'"):
        tq.of("shop")


def test_mismatched_lengths_rejected():
    with pytest.raises(ValueError, match="2 keys but 1 ids"):
        KeyQueue(2, 2).enqueue(keys(1, 2), torch.tensor([0]))
