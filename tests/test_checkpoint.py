"""Checkpoints: safetensors + JSON round trips, atomic replacement, optimizer and RNG state,
recovery after a kill inside a write."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from galrec.training import checkpoint
from galrec.training.checkpoint import (
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    recover_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def test_round_trip_tensors_and_state(tmp_path):
    tensors = {
        "weights": {"a.b": torch.arange(6.0).reshape(2, 3)},
        "ids": {"x": torch.tensor([1, -1])},
    }
    save_checkpoint(tmp_path / "ck", tensors, {"step": 7, "history": [{"ndcg": 0.5}]})
    loaded, state = load_checkpoint(tmp_path / "ck")
    assert state == {"step": 7, "history": [{"ndcg": 0.5}]}
    assert torch.equal(loaded["weights"]["a.b"], tensors["weights"]["a.b"])
    assert torch.equal(loaded["ids"]["x"], tensors["ids"]["x"])
    # nothing pickled: every file is safetensors or JSON
    assert {p.suffix for p in (tmp_path / "ck").iterdir()} == {".safetensors", ".json"}


def test_overwrite_is_atomic_and_leaves_no_staging(tmp_path):
    target = tmp_path / "last"
    save_checkpoint(target, {"w": {"v": torch.zeros(2)}}, {"step": 1})
    save_checkpoint(target, {"w": {"v": torch.ones(2)}}, {"step": 2})
    loaded, state = load_checkpoint(target)
    assert state["step"] == 2 and torch.equal(loaded["w"]["v"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_failed_write_keeps_previous_checkpoint(tmp_path):
    target = tmp_path / "last"
    save_checkpoint(target, {"w": {"v": torch.zeros(2)}}, {"step": 1})
    with pytest.raises(TypeError):  # the state is not JSON: the write fails midway
        save_checkpoint(target, {"w": {"v": torch.ones(2)}}, {"step": object()})
    _, state = load_checkpoint(target)
    assert state["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    with pytest.raises(FileNotFoundError, match="not a galrec checkpoint"):
        load_checkpoint(tmp_path)


def test_group_names_are_plain(tmp_path):
    with pytest.raises(ValueError, match="plain file stem"):
        save_checkpoint(tmp_path / "c", {"../x": {"v": torch.zeros(1)}}, {})


def _train_steps(model, opt, steps):
    for i in range(steps):
        x = torch.full((4, 3), float(i + 1))
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_optimizer_state_round_trip_continues_identically(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.01)
    _train_steps(model, opt, 3)
    tensors, meta = optimizer_to_tensors(opt)
    save_checkpoint(
        tmp_path / "c", {"opt": tensors, "model": dict(model.state_dict())}, {"opt": meta}
    )
    _train_steps(model, opt, 2)
    expected = model.weight.detach().clone()

    loaded, state = load_checkpoint(tmp_path / "c")
    fresh = torch.nn.Linear(3, 2)
    fresh.load_state_dict(loaded["model"])
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.5)
    optimizer_from_tensors(fresh_opt, loaded["opt"], state["opt"])
    assert fresh_opt.param_groups[0]["lr"] == 0.1
    _train_steps(fresh, fresh_opt, 2)
    assert torch.equal(fresh.weight, expected)


def test_rng_state_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    tensors, meta = rng_state()
    save_checkpoint(tmp_path / "r", {"rng": tensors}, {"rng": json.loads(json.dumps(meta))})
    draws = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    loaded, state = load_checkpoint(tmp_path / "r")
    set_rng_state(loaded["rng"], state["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == draws


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after the kill point runs, no cleanup either."""


def _save_killed_at(monkeypatch, target, point, step):
    """``save_checkpoint`` of ``step`` stopped at ``point`` as a kill would stop it."""

    def kill(name):
        if name == point:
            raise _Killed(name)

    monkeypatch.setattr(checkpoint, "_kill_point", kill)
    with pytest.raises(_Killed):
        save_checkpoint(target, {"w": {"v": torch.full((2,), float(step))}}, {"step": step})
    monkeypatch.undo()


@pytest.mark.parametrize(
    ("point", "expected"), [("staged", 2), ("between-renames", 2), ("renamed", 2)]
)
def test_recovery_after_a_kill_inside_the_write_keeps_the_newest_checkpoint(
    tmp_path, monkeypatch, point, expected
):
    target = tmp_path / "last"
    save_checkpoint(target, {"w": {"v": torch.ones(2)}}, {"step": 1})
    _save_killed_at(monkeypatch, target, point, step=2)
    if point == "between-renames":
        assert not target.exists()  # what a resume used to take for "no checkpoint"
    found = recover_checkpoint(target)
    loaded, state = load_checkpoint(target)
    assert found.step == state["step"] == expected
    assert torch.equal(loaded["w"]["v"], torch.full((2,), float(expected)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no stale copy left


def test_recovery_deletes_a_partial_staging_copy_and_keeps_the_complete_one(tmp_path):
    target = tmp_path / "best"
    save_checkpoint(target, {"w": {"v": torch.ones(2)}}, {"step": 4})
    partial = tmp_path / ".best.tmp-999"  # killed before its state.json: incomplete
    partial.mkdir()
    (partial / "w.safetensors").write_bytes(b"truncated")
    found = recover_checkpoint(target)
    assert (found.step, found.source, found.removed) == (4, "best", (".best.tmp-999",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    assert "removed .best.tmp-999" in found.describe()


def test_recovery_without_any_complete_copy_reports_none(tmp_path):
    (tmp_path / ".last.tmp-7").mkdir()
    found = recover_checkpoint(tmp_path / "last")
    assert found.step is None and found.removed == (".last.tmp-7",)
    assert list(tmp_path.iterdir()) == []


def test_kill_hook_sigkills_the_named_write(tmp_path):
    """GALREC_KILL_AT=<point>:<n> kills the n-th write at that point with a real SIGKILL."""
    code = (
        "import torch; from galrec.training.checkpoint import save_checkpoint as s\n"
        f"for step in (1, 2): s({str(tmp_path / 'last')!r}, {{'w': {{'v': torch.zeros(1)}}}}, "
        "{'step': step})\n"
    )
    env = {**os.environ, "GALREC_KILL_AT": "between-renames:2"}
    done = subprocess.run([sys.executable, "-c", code], env=env, check=False)
    assert done.returncode == -signal.SIGKILL
    assert sorted(p.name[: len(".last.old")] for p in tmp_path.iterdir()) == [
        ".last.old",
        ".last.tmp",
    ]
    assert recover_checkpoint(tmp_path / "last").step == 2
