"""InfoNCE and L0 against values computed by hand."""

from __future__ import annotations

import math

import torch
from galrec.model.losses import info_nce, recommendation_loss

E = math.e


def test_info_nce_batch_only_hand_computed():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = info_nce(q, q.clone(), torch.tensor([0, 1]), temperature=1.0)
    expected = -math.log(E / (E + 1.0))  # each row: positive 1, one negative at 0
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_info_nce_temperature_scales_logits():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = info_nce(q, q.clone(), torch.tensor([0, 1]), temperature=0.5)
    expected = -math.log(E**2 / (E**2 + 1.0))
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_info_nce_queue_negatives_and_own_node_excluded():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    queue = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    queue_ids = torch.tensor([0, 5])  # the first queue key belongs to row 0's own node
    loss = info_nce(q, q.clone(), torch.tensor([0, 1]), 1.0, queue, queue_ids)
    row0 = -math.log(E / (E + 1.0 + 1.0))  # batch key 1 (0) and queue id 5 (0); own key dropped
    row1 = -math.log(E / (E + 1.0 + 1.0 + E))  # batch key 0, queue id 0 (0), queue id 5 (1)
    assert math.isclose(loss.item(), (row0 + row1) / 2, rel_tol=1e-6)


def test_duplicate_node_in_batch_is_not_a_negative():
    q = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    k = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    both_same = info_nce(q, k, torch.tensor([3, 3]), 1.0)
    # every candidate except the positive belongs to the same node: loss is exactly zero
    assert both_same.item() == 0.0
    distinct = info_nce(q, k, torch.tensor([3, 4]), 1.0)
    row0 = -math.log(E**0 / (E**0 + E**1))
    row1 = -math.log(E**0.6 / (E**0.6 + E**0.8))
    assert math.isclose(distinct.item(), (row0 + row1) / 2, rel_tol=1e-6)


def test_info_nce_gradient_flows_to_query_only_when_key_detached():
    q = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1).requires_grad_()
    k = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    info_nce(q, k, torch.arange(4), 0.07).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0


def test_recommendation_loss_is_softmax_cross_entropy():
    scores = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    loss = recommendation_loss(scores, torch.tensor([0, 1]))
    row0 = -math.log(E**2 / (E**2 + 2))
    row1 = -math.log(1 / (2 + E))
    assert math.isclose(loss.item(), (row0 + row1) / 2, rel_tol=1e-6)
