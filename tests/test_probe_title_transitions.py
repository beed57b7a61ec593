"""scripts/probe_title_transitions.py, the probe docs/results.md quotes, on a tiny finished run:
it must rebuild the run's prior exactly (its validation NDCG@10 equals the run's own) and
train and join its title-transition part."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from galrec.training.trainer import Trainer
from train_helpers import tiny_config

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "probe_title_transitions.py"


@pytest.mark.slow
def test_probe_rebuilds_the_runs_prior_and_joins_a_trained_title_part(tmp_path):
    run_dir = tmp_path / "run"
    cfg = tiny_config(run_dir, "frozen_lm", "model.cf_epochs=5", "model.sasrec_epochs=2")
    result = Trainer(cfg).fit()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dataset", str(run_dir / "dataset"), "--run",
         str(run_dir), "--epochs", "2", "--report", "2"],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    prior = re.search(
        r"prior \(SASRec \+ LightGCN \+ frozen titles\): ([\d.]+) / ([\d.]+)", done.stdout
    )
    assert prior is not None, done.stdout
    assert float(prior.group(1)) == pytest.approx(result.valid["ndcg@10"], abs=1e-4)
    epochs = re.findall(r"epoch (\d): loss ([\d.]+), trained part alone ([\d.]+)", done.stdout)
    assert [int(e[0]) for e in epochs] == [1, 2]
    assert float(epochs[1][1]) < float(epochs[0][1])  # the transitions' loss falls
    joined = re.search(r"prior \+ trained part ([\d.]+) / ([\d.]+)", done.stdout)
    assert joined is not None and 0.0 < float(joined.group(1)) <= 1.0
