"""The GAL-Rec model: LoRA backbone + external ID embeddings + representation and L0 heads."""

from __future__ import annotations

import torch
from torch import nn

from galrec.backbone import Backbone
from galrec.external import ExternalEmbeddings
from galrec.heads import ItemScorer, RepresentationHead


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
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h, z)``: pooled states [B, H] and unit representations [B, head_dim]."""
        id_positions = node_ids >= 0
        embeds = self.backbone.token_embeddings(input_ids.masked_fill(id_positions, 0))
        if self.id_tokens:
            embeds = self.external.inject(embeds, node_ids)
        h = self.backbone(embeds, attention_mask, pool_index)
        return h, self.head(h)

    def item_scores(self, h_users: torch.Tensor) -> torch.Tensor:
        """L0 scores of pooled user states against every item, [B, num_items]."""
        return self.scorer(h_users, self.external.item_matrix())

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Every trainable tensor by name (adapters, projector, residual, heads)."""
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}
