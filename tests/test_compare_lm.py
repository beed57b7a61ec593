"""Language models plug into compare/evaluate by name (tiny in-code backbone, a few steps)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from galrec.cli import main
from galrec.data.semantic_gap import SemanticGapConfig, generate_semantic_gap
from galrec.experiments.compare import run_compare
from galrec.experiments.registry import get_model, open_run
from galrec.experiments.spec import MODELS
from synthetic_graph import single_thread

TINY_LM = {
    "model": {"backbone": "tiny-bert", "lora_rank": 4, "head_dim": 8, "cf_dim": 8, "cf_epochs": 3},
    "prompts": {"fanouts": [3, 2], "max_length": 48},
    "loss": {"queue_size": 32},
    "train": {"steps": 4, "batch_size": 4, "eval_every": 2, "warmup_steps": 1, "threads": 1},
}


def test_language_models_are_registered_by_name() -> None:
    for name in ("gal_rec", "text_lm", "id_lm", "no_l1", "no_l2", "no_l3", "no_queue", "no_hop2"):
        assert get_model(name).name == name
    assert MODELS["gal_rec"].kind == "method" and MODELS["text_lm"].kind == "baseline"
    assert MODELS["no_queue"].kind == "ablation"


@pytest.mark.slow
def test_gal_rec_and_text_lm_train_and_evaluate_in_compare(tmp_path) -> None:
    data = generate_semantic_gap(
        SemanticGapConfig(
            num_users=40, num_twin_groups=8, num_ordinary_items=20, max_interactions=20, seed=2
        )
    )
    data.save(tmp_path / "data")
    with single_thread():
        comparison = run_compare(
            data,
            ["popularity", "text_lm", "gal_rec"],
            seeds=[0],
            out_dir=tmp_path / "out",
            dataset_dir=tmp_path / "data",
            configs={"text_lm": TINY_LM, "gal_rec": TINY_LM},
            device="cpu",
            log=lambda _: None,
        )
    assert comparison.models == ["popularity", "text_lm", "gal_rec"]
    for name in ("text_lm", "gal_rec"):
        run = comparison.runs_of(name)[0]
        assert 0.0 <= run.result.metrics["ndcg@10"] <= 1.0
        assert run.geometry is not None  # z representations of users and items
        assert any("loss" in record for record in run.history)
    test = comparison.significance()
    assert (
        test is not None and test.model == "gal_rec" and test.baseline in ("popularity", "text_lm")
    )
    # The run directory reopens to the same scores, through the registry and the CLI.
    run_dir = tmp_path / "out" / "runs" / "gal_rec" / "seed0"
    scorer, meta = open_run(run_dir)
    assert meta["model"] == "gal_rec"
    users = torch.arange(5)
    original = comparison.runs_of("gal_rec")[0]
    assert scorer.score_users(users).shape == (5, data.num_items)
    with single_thread():
        result = CliRunner().invoke(main, ["evaluate", str(run_dir), "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    fresh = json.loads((tmp_path / "e" / "metrics.json").read_text())["metrics"]
    assert fresh["ndcg@10"] == pytest.approx(original.result.metrics["ndcg@10"], abs=1e-4)
