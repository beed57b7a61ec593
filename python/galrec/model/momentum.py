"""The momentum (key) encoder: an EMA of the trainable parameters only (docs/method.md).

The frozen backbone is shared between the online and the momentum encoder; only LoRA adapters,
the projector and the heads get a shadow copy. Keys are computed by running the online module
with the shadow tensors substituted (``torch.func.functional_call``), so no second model exists.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call


class MomentumEncoder:
    """Shadow copies ``theta_k <- m theta_k + (1 - m) theta_q`` of a module's trainable params."""

    def __init__(self, module: nn.Module, momentum: float) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad
        }

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """One EMA step towards the online parameters of ``module``."""
        for name, p in module.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(p.detach(), 1.0 - self.momentum)

    def forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        """Run ``module(*args, **kwargs)`` with the shadow parameters, without gradients."""
        with torch.no_grad():
            return functional_call(module, self.shadow, args, kwargs, strict=False)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow tensors by parameter name."""
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore shadow tensors saved by :meth:`state_dict`; names and shapes must match."""
        missing = set(self.shadow) - set(state)
        unexpected = set(state) - set(self.shadow)
        if missing or unexpected:
            raise KeyError(
                f"momentum state mismatch: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
        for name, tensor in state.items():
            if tensor.shape != self.shadow[name].shape:
                raise ValueError(
                    f"momentum state {name}: shape {tuple(tensor.shape)} != "
                    f"{tuple(self.shadow[name].shape)}"
                )
            self.shadow[name].copy_(tensor)
