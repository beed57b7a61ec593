"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the user's recent items.

Item embedding plus a learned position embedding, layer norm and dropout, then ``num_blocks``
post-norm Transformer blocks (causal multi-head self-attention, point-wise feed-forward, each
with a residual connection and layer norm), as in RecBole's implementation. Padding never takes
part in attention, so a position's output depends on the real items up to it and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from galrec.baselines.sequential import SequentialConfig, SequentialModel

_LAYER_NORM_EPS = 1e-12  # RecBole's


@dataclass
class SASRecConfig(SequentialConfig):
    """SASRec's architecture on top of the shared sequential hyperparameters."""

    num_blocks: int = 2
    num_heads: int = 1
    ffn_dim: int = 256  # inner size of the point-wise feed-forward network

    def validate(self) -> None:
        super().validate()
        if self.num_blocks < 1 or self.num_heads < 1 or self.ffn_dim < 1:
            raise ValueError("num_blocks, num_heads and ffn_dim must be >= 1")
        if self.dim % self.num_heads:
            raise ValueError(f"dim={self.dim} must be a multiple of num_heads={self.num_heads}")


class SelfAttentionBlock(nn.Module):
    """Multi-head self-attention and a feed-forward network, each added back and normalised."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim))
        self.attention_norm = nn.LayerNorm(dim, eps=_LAYER_NORM_EPS)
        self.ffn_norm = nn.LayerNorm(dim, eps=_LAYER_NORM_EPS)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, L, dim]``; ``allowed`` ``[B, 1, L, L]``, true where a query may attend."""
        batch, length, dim = x.shape
        q, k, v = (
            self.qkv(x)
            .view(batch, length, 3, self.num_heads, dim // self.num_heads)
            .permute(2, 0, 3, 1, 4)
        )
        attended = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout.p if self.training else 0.0
        )
        attended = attended.transpose(1, 2).reshape(batch, length, dim)
        x = self.attention_norm(x + self.dropout(self.out(attended)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class SASRec(SequentialModel, name="sasrec", config=SASRecConfig):
    """Self-attentive sequential recommendation; the output at a position is the user state
    after the items up to it."""

    config: SASRecConfig

    def __init__(self, num_items: int, config: SASRecConfig) -> None:
        super().__init__(num_items, config)
        self.positions = nn.Embedding(config.max_len, config.dim)
        self.norm = nn.LayerNorm(config.dim, eps=_LAYER_NORM_EPS)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(config.dim, config.num_heads, config.ffn_dim, config.dropout)
            for _ in range(config.num_blocks)
        )
        for module in self.modules():  # RecBole's initialisation
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def encode(self, sequences: torch.Tensor) -> torch.Tensor:
        length = sequences.shape[1]
        if length > self.config.max_len:
            raise ValueError(f"sequences of {length} items, more than max_len")
        # Right-aligned positions: the most recent item always has the last position.
        positions = torch.arange(self.config.max_len - length, self.config.max_len)
        x = self.items(sequences) + self.positions(positions.to(sequences.device))
        x = self.dropout(self.norm(x))
        padding = sequences == 0
        eye = torch.eye(length, dtype=torch.bool, device=sequences.device)
        causal = torch.ones(length, length, dtype=torch.bool, device=sequences.device).tril()
        # A query attends to the real items up to it; a padding query to itself alone, so that
        # no row of the attention is empty (which would give NaN).
        allowed = causal & (~padding[:, None, :] | eye)
        for block in self.blocks:
            x = block(x, allowed[:, None])
        return x
