"""Which views each term needs, and that the objective is the weighted sum of InfoNCE/L0 terms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from galrec.config import LossConfig
from galrec.model.losses import info_nce, recommendation_loss
from galrec.model.objective import BatchIds, enqueue_keys, objective, plan_views
from galrec.model.queue import TypedQueues


def test_plan_full_method():
    plan = plan_views(LossConfig())
    assert plan.online == ("user1", "user2", "item2")
    assert plan.keys == ("user0", "user1", "item0", "item1")


@pytest.mark.parametrize(
    ("changes", "online", "keys"),
    [
        ({"l1": 0.0, "l2": 0.0, "l3": 0.0}, ("user1",), ()),  # text_lm / id_lm: L0 only
        ({"hop2": False}, ("user1", "item1"), ("user0", "item0")),
        ({"l1": 0.0}, ("user1", "item2"), ("item0", "item1")),
        ({"l3": 0.0, "l0": 0.0}, ("user2", "item2"), ("user0", "user1", "item0", "item1")),
    ],
)
def test_plan_ablations_skip_unneeded_views(changes, online, keys):
    plan = plan_views(LossConfig(**changes))
    assert plan.online == online and plan.keys == keys


def _unit(n: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, 4, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_objective_equals_weighted_terms():
    cfg = LossConfig(l0=1.0, l1=0.5, l2=0.25, l3=2.0, temperature=0.1)
    plan = plan_views(cfg)
    online = {v: (torch.zeros(3, 2), _unit(3, i)) for i, v in enumerate(plan.online)}
    keys = {v: _unit(3, 10 + i) for i, v in enumerate(plan.keys)}
    ids = BatchIds(torch.tensor([0, 1, 2]), torch.tensor([0, 4, 1]), torch.tensor([5, 9, 6]))
    queues = TypedQueues(8, 4)
    queues.user.enqueue(_unit(2, 20), torch.tensor([1, 3]))
    queues.item.enqueue(_unit(2, 21), torch.tensor([9, 7]))
    scores = torch.randn(3, 6, generator=torch.Generator().manual_seed(3))
    total, terms = objective(cfg, plan, online, keys, ids, queues, scores)

    uq, iq = queues.user.contents(), queues.item.contents()
    expect_l0 = recommendation_loss(scores, ids.targets)
    expect_l1 = sum(
        info_nce(online["user2"][1], keys[k], ids.users, 0.1, *uq) for k in ("user0", "user1")
    )
    expect_l2 = sum(
        info_nce(online["item2"][1], keys[k], ids.items, 0.1, *iq) for k in ("item0", "item1")
    )
    expect_l3 = info_nce(online["user1"][1], keys["item0"], ids.items, 0.1, *iq)
    for name, value in (("l0", expect_l0), ("l1", expect_l1), ("l2", expect_l2), ("l3", expect_l3)):
        assert math.isclose(float(terms[name]), float(value), rel_tol=1e-6)
    expected = expect_l0 + 0.5 * expect_l1 + 0.25 * expect_l2 + 2.0 * expect_l3
    assert math.isclose(float(total), float(expected), rel_tol=1e-6)


def test_objective_without_queue_uses_batch_negatives_only():
    cfg = LossConfig(l0=0.0, l1=1.0, l2=0.0, l3=0.0, hop2=False)
    plan = plan_views(cfg)
    online = {"user1": (torch.zeros(3, 2), _unit(3, 1))}
    keys = {"user0": _unit(3, 2)}
    ids = BatchIds(torch.tensor([0, 1, 2]), torch.tensor([0, 0, 0]), torch.tensor([3, 3, 3]))
    total, _ = objective(cfg, plan, online, keys, ids, None, None)
    assert math.isclose(
        float(total), float(info_nce(online["user1"][1], keys["user0"], ids.users, 0.07))
    )


def test_l0_needs_scores():
    cfg = LossConfig(l1=0.0, l2=0.0, l3=0.0)
    online = {"user1": (torch.zeros(1, 2), _unit(1, 0))}
    ids = BatchIds(torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))
    with pytest.raises(ValueError, match="no user scores"):
        objective(cfg, plan_views(cfg), online, {}, ids, None, None)


def test_enqueue_routes_keys_by_type_with_node_ids():
    queues = TypedQueues(10, 4)
    ids = BatchIds(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([7, 8]))
    keys = {"user0": _unit(2, 0), "user1": _unit(2, 1), "item0": _unit(2, 2)}
    enqueue_keys(queues, keys, ids)
    assert queues.user.contents()[1].tolist() == [0, 1, 0, 1]
    assert queues.item.contents()[1].tolist() == [7, 8]
    assert torch.allclose(queues.item.contents()[0], keys["item0"])
