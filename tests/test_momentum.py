"""The momentum encoder: EMA of trainable parameters only, used through functional_call."""

from __future__ import annotations

import pytest
import torch
from galrec.model.momentum import MomentumEncoder
from torch import nn


def frozen_and_trainable() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    net[0].requires_grad_(False)  # the "frozen base"
    return net


def test_shadow_holds_trainable_params_only():
    net = frozen_and_trainable()
    ema = MomentumEncoder(net, 0.9)
    assert set(ema.shadow) == {"1.weight", "1.bias"}


def test_ema_update_formula():
    net = frozen_and_trainable()
    ema = MomentumEncoder(net, 0.9)
    old = ema.shadow["1.weight"].clone()
    with torch.no_grad():
        net[1].weight.add_(1.0)
    ema.update(net)
    assert torch.allclose(ema.shadow["1.weight"], 0.9 * old + 0.1 * net[1].weight)
    # the shadow is a copy, not an alias of the online parameter
    assert ema.shadow["1.weight"].data_ptr() != net[1].weight.data_ptr()


def test_forward_uses_shadow_and_no_grad():
    net = frozen_and_trainable()
    ema = MomentumEncoder(net, 0.5)
    x = torch.randn(4, 3)
    assert torch.allclose(ema.forward(net, x), net(x))  # identical right after creation
    with torch.no_grad():
        net[1].weight.mul_(3.0)
    out = ema.forward(net, x)
    assert not out.requires_grad
    assert not torch.allclose(out, net(x))
    expected = nn.functional.linear(net[0](x), ema.shadow["1.weight"], ema.shadow["1.bias"])
    assert torch.allclose(out, expected)


def test_momentum_zero_copies_online():
    net = frozen_and_trainable()
    ema = MomentumEncoder(net, 0.0)
    with torch.no_grad():
        net[1].bias.fill_(2.0)
    ema.update(net)
    assert torch.equal(ema.shadow["1.bias"], net[1].bias)


def test_state_round_trip_and_mismatch():
    net = frozen_and_trainable()
    ema = MomentumEncoder(net, 0.9)
    other = MomentumEncoder(frozen_and_trainable(), 0.9)
    state = {k: v + 1 for k, v in ema.state_dict().items()}
    other.load_state_dict(state)
    assert torch.equal(other.shadow["1.bias"], state["1.bias"])
    with pytest.raises(KeyError, match="missing"):
        other.load_state_dict({"1.weight": state["1.weight"]})
    with pytest.raises(ValueError, match="momentum must be"):
        MomentumEncoder(net, 1.0)
