"""The GAL-Rec model: LoRA backbone + external ID embeddings + representation and L0 heads."""

from __future__ import annotations

import torch
from torch import nn

from galrec.backbone import Backbone
from galrec.config import LossConfig
from galrec.external import ExternalEmbeddings
from galrec.heads import ItemScorer, RepresentationHead


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on GPU; a no-op (fp32) on CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


class GalRecModel(nn.Module):
    """Maps token batches (with ID positions) to pooled states h and representations z."""

    def __init__(
        self, backbone: Backbone, external: ExternalEmbeddings, head_dim: int, id_tokens: bool
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.external = external
        self.head = RepresentationHead(backbone.hidden_size, head_dim)
        self.scorer = ItemScorer(backbone.hidden_size)
        self.id_tokens = id_tokens

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        node_ids: torch.Tensor,
        pool_index: torch.Tensor,
        score_rows: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(h, z, scores)``: pooled states [B, H], unit representations [B, head_dim] and
        the L0 scores [score_rows, num_items] of the first ``score_rows`` prompts (users).

        Everything trainable is used inside this call, as DistributedDataParallel requires.
        """
        id_positions = node_ids >= 0
        embeds = self.backbone.token_embeddings(input_ids.masked_fill(id_positions, 0))
        if self.id_tokens:
            embeds = self.external.inject(embeds, node_ids)
        else:  # a text-only model: ID tokens are invisible (masked out of attention and pooling)
            attention_mask = attention_mask.masked_fill(id_positions, 0)
        h = self.backbone(embeds, attention_mask, pool_index)
        scores = self.item_scores(h[:score_rows]) if score_rows > 0 else None
        return h, self.head(h), scores

    def item_scores(self, h_users: torch.Tensor) -> torch.Tensor:
        """L0 scores of pooled user states against every item, [B, num_items]."""
        return self.scorer(h_users, self.external.item_matrix())

    def freeze_unused(self, loss: LossConfig) -> None:
        """Freeze the parts no enabled term trains (DDP needs a gradient for every trainable)."""
        if loss.l1 <= 0 and loss.l2 <= 0 and loss.l3 <= 0:
            self.head.requires_grad_(False)
        if loss.l0 <= 0:
            self.scorer.requires_grad_(False)
            if not self.id_tokens:
                self.external.requires_grad_(False)

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        """Load tensors saved from :meth:`trainable_state` (names must all exist)."""
        params = dict(self.named_parameters())
        unknown = sorted(set(state) - set(params))
        if unknown:
            raise KeyError(f"checkpoint holds tensors this model lacks: {unknown[:5]}")
        with torch.no_grad():
            for name, tensor in state.items():
                params[name].copy_(tensor)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Every trainable tensor by name (adapters, projector, residual, heads)."""
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}
