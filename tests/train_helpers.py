"""Tiny in-code models for the training tests (no downloads)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from galrec.config import Config, ModelConfig, load_config
from galrec.model.backbone import Backbone, load_backbone
from galrec.model.external import ExternalEmbeddings
from galrec.model.gal_rec import GalRecModel

TITLES = [f"red wool scarf number {i}" for i in range(6)] + ["blue cotton shirt", "green tea"]


def tiny_model(
    tmp_path: Path, backbone: str = "tiny-bert", num_users: int = 4, num_items: int = 8
) -> GalRecModel:
    """A 2-layer tiny BERT/Llama with LoRA, random 6-d node features and a residual."""
    cfg = ModelConfig(backbone=backbone, lora_rank=4, head_dim=8)
    loaded = load_backbone(cfg, TITLES, tmp_path, seed=0)
    backbone_module = Backbone(loaded, cfg)
    torch.manual_seed(0)
    feats = torch.randn(num_users + num_items, 6)
    external = ExternalEmbeddings(feats, num_users, backbone_module.hidden_size, "linear", True)
    return GalRecModel(backbone_module, external, head_dim=8, id_tokens=True)


def tiny_batch(
    num_users: int = 4, num_items: int = 8, batch: int = 3, length: int = 7
) -> dict[str, torch.Tensor]:
    """Random token ids with two ID-token positions per row (one user, one item)."""
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(4, 20, (batch, length), generator=g)
    node_ids = torch.full((batch, length), -1, dtype=torch.long)
    node_ids[:, 0] = torch.arange(batch) % num_users
    node_ids[:, 2] = num_users + (torch.arange(batch) % num_items)
    input_ids[:, 0] = 10_000  # ID tokens lie beyond the base vocabulary
    attention_mask = torch.ones(batch, length, dtype=torch.long)
    attention_mask[0, -2:] = 0
    pool_index = attention_mask.sum(1) - 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "node_ids": node_ids,
        "pool_index": pool_index,
    }


TINY_DATA = (
    "data.generator={num_users: 160, num_twin_groups: 20, num_ordinary_items: 30, "
    "min_interactions: 8, max_interactions: 16}"
)


#: The overrides that make a bundled config tiny (also passed to ``galrec train`` as they are).
TINY_OVERRIDES = (
    "model.backbone=tiny-bert",
    "model.cf_epochs=20",
    "model.head_dim=16",
    "prompts.fanouts=[5, 3]",
    "prompts.max_length=64",
    "train.batch_size=16",
    "train.lr=0.003",
    "train.warmup_steps=2",
    "train.threads=1",
    "train.progress=false",
    "loss.queue_size=256",
    TINY_DATA,
)


def tiny_config(out_dir: Path, name: str = "gal_rec", *overrides: str) -> Config:
    """A bundled config on the tiny semantic-gap world with a tiny BERT, fast on one CPU core."""
    path = resources.files("galrec") / "configs" / f"{name}.yaml"
    return load_config(str(path), [*TINY_OVERRIDES, f"out_dir={out_dir}", *overrides])
