"""The default thread count: all cores less those other processes keep busy, measured from
/proc/stat; an explicit count wins; a process picks once; a resumed run keeps its count."""

from __future__ import annotations

import json

import pytest
import torch
from galrec.training import threads
from galrec.training.threads import busy_cores, pick_threads, use_threads
from galrec.training.trainer import Trainer
from train_helpers import tiny_config


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)


@pytest.fixture
def fresh_choice(monkeypatch):
    """A process that has not picked yet; torch's count restored afterwards."""
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_chosen", None)
    yield
    torch.set_num_threads(before)


def test_an_explicit_count_is_kept(four_cores, monkeypatch):
    monkeypatch.setattr(threads, "busy_cores", lambda: pytest.fail("measured although set"))
    assert pick_threads(3).count == 3


@pytest.mark.parametrize(("busy", "count"), [(0.0, 4), (0.4, 4), (1.0, 3), (2.6, 1), (9.0, 1)])
def test_busy_cores_are_left_free(four_cores, busy, count):
    choice = pick_threads(0, busy=busy)
    assert choice.count == count
    assert ("other processes kept" in choice.reason) == (count < 4)


def test_ddp_ranks_share_the_cores_without_measuring(four_cores, monkeypatch):
    monkeypatch.setattr(threads, "busy_cores", lambda: pytest.fail("measured under DDP"))
    assert pick_threads(0, processes_per_machine=2).count == 2
    assert pick_threads(0, processes_per_machine=8).count == 1


def test_busy_cores_from_proc_stat(tmp_path, four_cores, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4 5\n")

    def half_busy_meanwhile(seconds: float) -> None:  # 200 jiffies pass, 100 of them idle
        stat.write_text("cpu  150 0 150 850 50 0 0 0 0 0\ncpu0 1 2 3 4 5\n")

    monkeypatch.setattr(threads.time, "sleep", half_busy_meanwhile)
    assert busy_cores(stat) == pytest.approx(2.0)  # half of 4 cores


def test_an_unreadable_proc_stat_falls_back_to_the_load_average(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text("not the kernel's format\n")
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.5, 1.0, 0.5))
    assert busy_cores(stat) == 1.5
    assert busy_cores(tmp_path / "missing") == 1.5


def test_a_process_picks_once(fresh_choice, monkeypatch):
    monkeypatch.setattr(threads, "busy_cores", lambda: 0.0)
    first = use_threads(0)
    assert first is not None and torch.get_num_threads() == first.count
    assert use_threads(0) is None  # a later run in the same process keeps the choice
    assert use_threads(1) is not None and torch.get_num_threads() == 1  # unless told


def test_a_resumed_run_keeps_its_thread_count(tmp_path, fresh_choice, monkeypatch):
    steps = ("train.steps=2", "train.eval_every=2", "train.checkpoint_every=1")
    Trainer(tiny_config(tmp_path, "gal_rec", *steps)).fit()
    state = json.loads((tmp_path / "last" / "state.json").read_text())
    assert state["threads"] == 1  # the tiny config sets train.threads=1

    torch.set_num_threads(2)
    monkeypatch.setattr(threads, "_chosen", None)
    monkeypatch.setattr(threads, "busy_cores", lambda: pytest.fail("measured on a resume"))
    trainer = Trainer(
        tiny_config(tmp_path, "gal_rec", *steps, "train.threads=0"),
        resume=True, allow_config_change=True,
    )  # fmt: skip
    assert torch.get_num_threads() == 1
    assert "torch threads: 1 (as the resumed run had)" in trainer.notes
