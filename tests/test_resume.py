"""Resume equivalence: a run killed after a checkpoint and resumed ends exactly like an
uninterrupted run with the same seed (weights, momentum, queues, metrics)."""

from __future__ import annotations

import json

import pytest
import torch
from galrec.training.checkpoint import load_checkpoint
from galrec.training.pipeline import BatchSource
from galrec.training.run import Run
from galrec.training.trainer import MetricsLogger, Trainer
from train_helpers import tiny_config

STEPS = ("train.steps=6", "train.checkpoint_every=3", "train.eval_every=3", "train.patience=0")


@pytest.mark.parametrize(("crash_batch", "checkpoint"), [(4, "last"), (1, "best")])
def test_resume_matches_uninterrupted_run(tmp_path, monkeypatch, crash_batch, checkpoint):
    """Crashed in step 5: resumed from last/ at step 3. Crashed in step 2, before any last/:
    resumed from best/, which step 0's validation wrote (not validated a second time)."""
    full = Trainer(tiny_config(tmp_path / "full", "gal_rec", *STEPS)).fit()

    crashed_dir = tmp_path / "crashed"
    original = BatchSource.__call__

    def crash(self, index):
        if index == crash_batch:
            raise RuntimeError("simulated kill")
        return original(self, index)

    monkeypatch.setattr(BatchSource, "__call__", crash)
    with pytest.raises(RuntimeError, match="simulated kill"):
        Trainer(tiny_config(crashed_dir, "gal_rec", *STEPS)).fit()
    assert (crashed_dir / "last").exists() == (checkpoint == "last")
    monkeypatch.setattr(BatchSource, "__call__", original)

    trainer = Trainer(tiny_config(crashed_dir, "gal_rec", *STEPS), resume=True)
    step = 3 if checkpoint == "last" else 0
    assert trainer.notes[-1] == f"--resume: continuing from {checkpoint}/ at step {step}"
    resumed = trainer.fit()
    assert resumed.steps == full.steps == 6
    a, _ = load_checkpoint(tmp_path / "full" / "last")
    b, _ = load_checkpoint(crashed_dir / "last")
    for group in ("trainable", "momentum", "queues", "optimizer"):
        assert a[group].keys() == b[group].keys()
        for name in a[group]:
            assert torch.allclose(a[group][name].float(), b[group][name].float(), atol=1e-6), name
    assert resumed.test == pytest.approx(full.test, abs=1e-6)
    assert resumed.history == full.history
    steps = [json.loads(line)["step"] for line in (crashed_dir / "metrics.jsonl").open()]
    assert steps == sorted(steps)  # records past the checkpoint were dropped on resume


def test_adapter_checkpoint_loads_in_peft(tmp_path):
    from galrec.model.backbone import load_backbone
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


def test_a_run_resumed_after_its_early_stop_stays_stopped(tmp_path, monkeypatch):
    def flat(self, split, ks, scorer=None, users=None):  # validation never improves
        return {f"ndcg@{k}": 0.0 for k in ks}

    monkeypatch.setattr(Run, "evaluate", flat)
    overrides = ("train.steps=6", "train.eval_every=1", "train.patience=1")
    stopped = Trainer(tiny_config(tmp_path, "gal_rec", *overrides)).fit()
    assert stopped.steps == 1  # step 0 is the best, step 1 spends the patience
    resumed = Trainer(tiny_config(tmp_path, "gal_rec", *overrides), resume=True).fit()
    assert resumed.steps == 1  # not trained on from the early stop's checkpoint


def test_resumed_metrics_drop_the_final_test_records(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [{"step": 1, "train/loss": 1.0}, {"step": 2, "valid/ndcg@10": 0.1}, {"step": 3}]
    records.append({"step": 2, "test/ndcg@10": 0.2})  # a finished run at step 2, resumed again
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    MetricsLogger(tmp_path, enabled=True, resumed_step=2).close()
    assert [json.loads(line) for line in path.open()] == records[:2]


def test_keys_a_resume_may_change_freely_leave_the_weights_alone(tmp_path):
    """galrec.training.rundir.NEUTRAL_KEYS: checkpointing, logging and the progress bar touch no
    state."""
    common = ("train.steps=4", "train.eval_every=2", "train.patience=0")
    Trainer(tiny_config(tmp_path / "a", "gal_rec", *common, "train.checkpoint_every=1")).fit()
    neutral = ("train.checkpoint_every=4", "train.log_every=3", "train.progress=true")
    Trainer(tiny_config(tmp_path / "b", "gal_rec", *common, *neutral)).fit()
    a, _ = load_checkpoint(tmp_path / "a" / "last")
    b, _ = load_checkpoint(tmp_path / "b" / "last")
    for group in a:
        assert all(torch.equal(t, b[group][name]) for name, t in a[group].items()), group
