"""Per-node-type FIFO queues of momentum-encoder keys (docs/method.md, MoCo-style).

Each entry keeps the key vector and the global node id it came from, so a loss can drop keys
of the anchor's own node from its negatives.
"""

from __future__ import annotations

import torch
from torch import nn


class KeyQueue(nn.Module):
    """A ring buffer of ``size`` L2-normalised keys with their node ids; the oldest drop out."""

    keys: torch.Tensor
    ids: torch.Tensor
    ptr: torch.Tensor

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"KeyQueue needs size >= 1 and dim >= 1, got size={size}, dim={dim}")
        self.size = size
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def filled(self) -> int:
        """How many slots hold a key (grows to ``size``, then stays)."""
        return int((self.ids >= 0).sum())

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, ids: torch.Tensor) -> None:
        """Append ``keys`` [n, dim] with node ``ids`` [n]; overwrite the oldest when full."""
        if keys.shape[0] != ids.shape[0]:
            raise ValueError(f"enqueue: {keys.shape[0]} keys but {ids.shape[0]} ids")
        n = keys.shape[0]
        if n >= self.size:  # only the newest ``size`` survive
            keys, ids, n = keys[-self.size :], ids[-self.size :], self.size
        slots = (self.ptr + torch.arange(n, device=self.ids.device)) % self.size
        self.keys[slots] = keys.detach().to(self.keys.dtype)
        self.ids[slots] = ids.to(self.ids.device, torch.long)
        self.ptr.copy_((self.ptr + n) % self.size)

    def contents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The filled keys and their ids, oldest first."""
        order = (self.ptr + torch.arange(self.size, device=self.ids.device)) % self.size
        keys, ids = self.keys[order], self.ids[order]
        valid = ids >= 0
        return keys[valid], ids[valid]


class TypedQueues(nn.Module):
    """One :class:`KeyQueue` per node type (``user``, ``item``)."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.user = KeyQueue(size, dim)
        self.item = KeyQueue(size, dim)

    def of(self, node_type: str) -> KeyQueue:
        """The queue for ``"user"`` or ``"item"``."""
        if node_type not in ("user", "item"):
            raise ValueError(f"node type must be 'user' or 'item', got {node_type!r}")
        return self.user if node_type == "user" else self.item
