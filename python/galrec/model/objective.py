"""One batch of the GAL-Rec objective: which views each term needs, and the weighted sum.

Anchors (queries) run through the online model with gradients; the keys they are compared
with run through the momentum encoder without gradients and are enqueued afterwards:
- L0: user hop-1 (target removed) -> softmax over all items for the target;
- L1: user hop-2 vs user hop-0 and hop-1 keys (hop-1 vs hop-0 with ``hop2`` off);
- L2: the same for items;
- L3: user hop-1 vs the target item's hop-0 key.

With ``loss.contrastive_batch`` the L1-L3 views cover only the batch's first rows (keys and
their anchors alike; the queue supplies the negatives), while L0 scores every row.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from galrec.config import LossConfig
from galrec.model.losses import info_nce, recommendation_loss
from galrec.model.queue import TypedQueues


@dataclass
class ViewPlan:
    """Names of the views (``user0`` .. ``item2``) the online and momentum encoders must see."""

    online: tuple[str, ...]
    keys: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.online + self.keys))


def plan_views(cfg: LossConfig) -> ViewPlan:
    """The views the enabled terms need (a disabled term costs no forward pass)."""
    top = "2" if cfg.hop2 else "1"
    online: list[str] = []
    keys: list[str] = []
    if cfg.l0 > 0 or cfg.l3 > 0:
        online.append("user1")
    if cfg.l1 > 0:
        online.append("user" + top)
        keys += ["user0", "user1"] if cfg.hop2 else ["user0"]
    if cfg.l2 > 0:
        online.append("item" + top)
        keys += ["item0", "item1"] if cfg.hop2 else ["item0"]
    if cfg.l3 > 0:
        keys.append("item0")
    return ViewPlan(tuple(dict.fromkeys(online)), tuple(dict.fromkeys(keys)))


@dataclass
class BatchIds:
    """Who is in the batch: user ids, their target items, and the batch's items (global ids)."""

    users: torch.Tensor  # global ids of the users (= user ids)
    targets: torch.Tensor  # item ids 0..num_items-1 of the held-out training targets
    items: torch.Tensor  # global ids (num_users + item) of the item views' nodes
    # L0's targets when a row has several ([B, m], -1 padded; None: ``targets``) and the items
    # each user consumed before them, left out of L0's softmax ([B, num_items] bool; None: none).
    l0_targets: torch.Tensor | None = None
    seen: torch.Tensor | None = None
    # Where each user's time-ordered history is cut (``train.target=next``): the first target's
    # position; a sequential score prior reads only what comes before it.
    cut: torch.Tensor | None = None

    def to(self, device: torch.device) -> BatchIds:
        """The same ids on ``device``."""
        return replace(
            self,
            **{
                f.name: getattr(self, f.name).to(device)
                for f in fields(self)
                if getattr(self, f.name) is not None
            },
        )


def objective(
    cfg: LossConfig,
    plan: ViewPlan,
    online: dict[str, tuple[torch.Tensor, torch.Tensor]],
    keys: dict[str, torch.Tensor],
    ids: BatchIds,
    queues: TypedQueues | None,
    user_scores: torch.Tensor | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted loss and each term (detached) for one batch of encoded views.

    ``online`` maps view -> (h, z), ``keys`` view -> momentum z, ``user_scores`` are the L0
    scores [B, num_items] of the ``user1`` view (None when L0 is off).
    """
    top = "2" if cfg.hop2 else "1"
    terms: dict[str, torch.Tensor] = {}

    def contrast(
        query: torch.Tensor, key: torch.Tensor, key_ids: torch.Tensor, kind: str
    ) -> torch.Tensor:
        rows = key.shape[0]  # the contrastive sub-batch: the batch's first rows
        query, key_ids = query[:rows], key_ids[:rows]
        if queues is None:
            return info_nce(query, key, key_ids, cfg.temperature)
        q_keys, q_ids = queues.of(kind).contents()
        return info_nce(query, key, key_ids, cfg.temperature, q_keys, q_ids)

    if cfg.l0 > 0:
        if user_scores is None:
            raise ValueError("L0 is enabled but no user scores were computed")
        targets = ids.targets if ids.l0_targets is None else ids.l0_targets
        terms["l0"] = recommendation_loss(user_scores, targets, ids.seen)
    if cfg.l1 > 0:
        anchor = online["user" + top][1]
        pos = ["user0", "user1"] if cfg.hop2 else ["user0"]
        terms["l1"] = sum(contrast(anchor, keys[v], ids.users, "user") for v in pos)  # type: ignore[assignment]
    if cfg.l2 > 0:
        anchor = online["item" + top][1]
        pos = ["item0", "item1"] if cfg.hop2 else ["item0"]
        terms["l2"] = sum(contrast(anchor, keys[v], ids.items, "item") for v in pos)  # type: ignore[assignment]
    if cfg.l3 > 0:
        target_global = ids.items
        terms["l3"] = contrast(online["user1"][1], keys["item0"], target_global, "item")
    weights = {"l0": cfg.l0, "l1": cfg.l1, "l2": cfg.l2, "l3": cfg.l3}
    total = sum(weights[name] * value for name, value in terms.items())
    return total, {name: value.detach() for name, value in terms.items()}  # type: ignore[return-value]


@torch.no_grad()
def enqueue_keys(queues: TypedQueues, keys: dict[str, torch.Tensor], ids: BatchIds) -> None:
    """Push this batch's momentum keys into the per-type queues (after the loss used them)."""
    for view, z in keys.items():
        kind = "user" if view.startswith("user") else "item"
        queues.of(kind).enqueue(z, (ids.users if kind == "user" else ids.items)[: z.shape[0]])
