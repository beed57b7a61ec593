"""Run directories: a new run refuses another run's directory unless --overwrite, --resume finds
the newest complete checkpoint (or says there is none) and refuses a changed config unless
--allow-config-change (issues 14 and 15). Fake checkpoints: nothing is trained here."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from galrec.cli import main
from galrec.config import load_config
from galrec.training.checkpoint import save_checkpoint
from galrec.training.rundir import CHANGES_FILE, RunDirError, claim_run_dir


def _config(*overrides: str) -> dict:
    return load_config(None, overrides).to_dict()


def _checkpoint(path, step: int, config: dict) -> None:
    save_checkpoint(path, {"w": {"v": torch.zeros(1)}}, {"step": step, "config": config})


def _run_dir(tmp_path, step: int = 3, config: dict | None = None):
    """A run directory as a run leaves it: config.yaml, metrics, last/ at ``step``."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: gal_rec\n")
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    _checkpoint(run / "last", step, config or _config())
    return run


def test_resume_after_a_kill_between_the_renames_finds_the_moved_checkpoint(tmp_path):
    run = _run_dir(tmp_path, step=3)
    (run / "last").rename(run / ".last.old-4242")  # killed between save_checkpoint's renames
    _checkpoint(run / "staged", 6, _config())
    (run / "staged").rename(run / ".last.tmp-4242")
    claim = claim_run_dir(run, _config(), resume=True)
    assert claim.checkpoint == run / "last"
    assert json.loads((run / "last" / "state.json").read_text())["step"] == 6
    assert "step 6, recovered from .last.tmp-4242" in claim.notes[0]
    assert "removed .last.old-4242" in claim.notes[0]
    assert not list(run.glob(".last.*"))


def test_resume_continues_from_best_when_it_is_newer_than_last(tmp_path):
    run = _run_dir(tmp_path, step=2)
    _checkpoint(run / "best", 4, _config())  # killed while writing last/ at step 4
    claim = claim_run_dir(run, _config(), resume=True)
    assert claim.checkpoint == run / "best"
    assert claim.notes[-1] == "--resume: continuing from best/ at step 4"


def test_resume_of_a_run_without_checkpoint_is_refused_and_of_no_run_starts_fresh(tmp_path):
    run = _run_dir(tmp_path)
    (run / "last" / "state.json").unlink()  # what a kill during a deletion leaves
    (run / "last").rename(run / ".last.tmp-1")
    with pytest.raises(RunDirError, match=r"no complete checkpoint.*\.last\.tmp-1.*--overwrite"):
        claim_run_dir(run, _config(), resume=True)
    claim = claim_run_dir(tmp_path / "new", _config(), resume=True)
    assert claim.checkpoint is None and "holds no run yet; starting from step 0" in claim.notes[0]


def test_resume_with_a_changed_config_is_refused_unless_allowed_and_then_recorded(tmp_path):
    run = _run_dir(tmp_path, config=_config("train.lr=0.003"))
    changed = _config("train.lr=0.03", "train.progress=false")
    with pytest.raises(RunDirError) as refused:
        claim_run_dir(run, changed, resume=True)
    message = str(refused.value)
    assert "\n" not in message and "train.lr: 0.003 -> 0.03" in message
    assert "--allow-config-change" in message and not (run / CHANGES_FILE).exists()

    claim = claim_run_dir(run, changed, resume=True, allow_config_change=True)
    assert claim.checkpoint is not None and "train.lr: 0.003 -> 0.03" in claim.notes[-1]
    record = json.loads((run / CHANGES_FILE).read_text())
    assert record["step"] == 3
    assert record["changes"] == {"train.lr": [0.003, 0.03], "train.progress": [True, False]}


def test_resume_may_change_keys_that_cannot_change_the_result(tmp_path):
    run = _run_dir(tmp_path)
    neutral = _config("train.progress=false", "train.log_every=5", "train.checkpoint_every=7")
    claim = claim_run_dir(run, neutral, resume=True)
    assert claim.checkpoint is not None and "train.log_every: 1 -> 5" in claim.notes[-1]
    with pytest.raises(RunDirError, match=r"train\.threads: 0 -> 2"):
        claim_run_dir(run, _config("train.threads=2"), resume=True)


def test_a_new_run_refuses_another_runs_directory_unless_overwrite(tmp_path):
    run = _run_dir(tmp_path)
    (run / "dataset").mkdir()
    (run / ".best.old-12").mkdir()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match=r"holds another run.*--resume.*--overwrite"):
        claim_run_dir(run, _config())
    claim = claim_run_dir(run, _config(), overwrite=True)
    assert claim.checkpoint is None and "removed" in claim.notes[0]
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]  # only galrec's files go
    with pytest.raises(RunDirError, match="exclude each other"):
        claim_run_dir(run, _config(), resume=True, overwrite=True)


def test_cli_refuses_with_one_line_and_exit_code_2(tmp_path):
    run = _run_dir(tmp_path)
    result = CliRunner().invoke(main, ["train", "--out", str(run), "train.steps=1"])
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert "holds another run" in result.output
    changed = CliRunner().invoke(main, ["train", "--out", str(run), "--resume", "train.lr=1"])
    assert changed.exit_code == 2 and "train.lr: 0.0005 -> 1.0" in changed.output
