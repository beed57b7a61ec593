"""Resume equivalence: a run killed after a checkpoint and resumed ends exactly like an
uninterrupted run with the same seed (weights, momentum, queues, metrics)."""

from __future__ import annotations

import json

import pytest
import torch
from galrec.checkpoint import load_checkpoint
from galrec.pipeline import BatchSource
from galrec.train import Trainer
from train_helpers import tiny_config

STEPS = ("train.steps=6", "train.checkpoint_every=3", "train.eval_every=3", "train.patience=0")


def test_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    full = Trainer(tiny_config(tmp_path / "full", "gal_rec", *STEPS)).fit()

    crashed_dir = tmp_path / "crashed"
    original = BatchSource.__call__

    def crash_at_batch_4(self, index):
        if index == 4:
            raise RuntimeError("simulated kill")
        return original(self, index)

    monkeypatch.setattr(BatchSource, "__call__", crash_at_batch_4)
    with pytest.raises(RuntimeError, match="simulated kill"):
        Trainer(tiny_config(crashed_dir, "gal_rec", *STEPS)).fit()
    assert json.loads((crashed_dir / "last" / "state.json").read_text())["step"] == 3
    monkeypatch.setattr(BatchSource, "__call__", original)

    resumed = Trainer(tiny_config(crashed_dir, "gal_rec", *STEPS)).fit(resume=True)
    assert resumed.steps == full.steps == 6
    a, _ = load_checkpoint(tmp_path / "full" / "last")
    b, _ = load_checkpoint(crashed_dir / "last")
    for group in ("trainable", "momentum", "queues", "optimizer"):
        assert a[group].keys() == b[group].keys()
        for name in a[group]:
            assert torch.allclose(a[group][name].float(), b[group][name].float(), atol=1e-6), name
    assert resumed.test == pytest.approx(full.test, abs=1e-6)
    steps = [json.loads(line)["step"] for line in (crashed_dir / "metrics.jsonl").open()]
    assert steps == sorted(steps)  # records past the checkpoint were dropped on resume


def test_adapter_checkpoint_loads_in_peft(tmp_path):
    from galrec.backbone import load_backbone
    from peft import PeftModel

    cfg = tiny_config(tmp_path / "r", "gal_rec", "train.steps=2", "train.eval_every=0")
    trainer = Trainer(cfg)
    trainer.fit()
    fresh = load_backbone(cfg.model, trainer.run.dataset.item_texts, tmp_path / "fresh", seed=0)
    reloaded = PeftModel.from_pretrained(fresh.model, str(tmp_path / "r" / "last" / "adapter"))
    trained = dict(trainer.model.backbone.model.named_parameters())
    lora = {n: p for n, p in reloaded.named_parameters() if "lora_B" in n}
    assert lora
    for name, param in lora.items():
        assert torch.equal(param, trained[name].detach()), name
    assert any(p.abs().sum() > 0 for p in lora.values())  # trained, not the zero init
