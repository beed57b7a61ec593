"""GRU4Rec (Hidasi et al., ICLR 2016) as in RecBole: item embedding, dropout, a GRU over the
user's recent items and a linear map from the GRU state to the item embedding space."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from galrec.baselines.sequential import SequentialConfig, SequentialModel


@dataclass
class GRU4RecConfig(SequentialConfig):
    """GRU4Rec's architecture on top of the shared sequential hyperparameters."""

    hidden: int = 64  # GRU state size
    num_layers: int = 1

    def validate(self) -> None:
        super().validate()
        if self.hidden < 1 or self.num_layers < 1:
            raise ValueError("hidden and num_layers must be >= 1")


class GRU4Rec(SequentialModel, name="gru4rec", config=GRU4RecConfig):
    """Recurrent sequential recommendation; the state after an item is the user's state."""

    config: GRU4RecConfig

    def __init__(self, num_items: int, config: GRU4RecConfig) -> None:
        super().__init__(num_items, config)
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(config.dim, config.hidden, config.num_layers, batch_first=True)
        self.project = nn.Linear(config.hidden, config.dim)
        nn.init.xavier_normal_(self.items.weight)  # RecBole's initialisation
        for name, weight in self.gru.named_parameters():
            if name.startswith("weight"):
                nn.init.xavier_uniform_(weight)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def encode(self, sequences: torch.Tensor) -> torch.Tensor:
        # Run the GRU on right-padded rows so its state starts at the first real item (left
        # padding would feed it a varying number of padding steps first), then shift back;
        # padding positions output 0 (their states would come after the real items).
        length = sequences.shape[1]
        columns = torch.arange(length, device=sequences.device)[None, :]
        padding = sequences == 0
        pads = padding.sum(1, keepdim=True)
        right_padded = sequences.gather(1, (columns + pads) % length)
        states, _ = self.gru(self.dropout(self.items(right_padded)))
        hidden = self.project(states)
        back = ((columns - pads) % length)[:, :, None].expand(-1, -1, hidden.shape[2])
        return hidden.gather(1, back).masked_fill(padding[:, :, None], 0.0)
