"""End to end through the real pipeline (Rust sampler + assembler, tiny BERT): GAL-Rec separates
twins (near-identical titles, different communities) far better than the text-only LM."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner
from galrec.cli import main
from galrec.training.trainer import train
from train_helpers import tiny_config


def two_proportion_z(p1: float, p2: float, n: int) -> float:
    """z statistic of p1 > p2 for two samples of size n (pooled variance)."""
    pooled = (p1 + p2) / 2
    return (p1 - p2) / math.sqrt(2 * pooled * (1 - pooled) / n)


@pytest.mark.slow
def test_gal_rec_beats_text_only_on_twin_separation(tmp_path):
    steps = ("train.steps=120", "train.eval_every=60")
    gal = train(tiny_config(tmp_path / "gal", "gal_rec", *steps))
    text = train(tiny_config(tmp_path / "text", "text_lm", *steps))
    n = int(gal.test["twin_n"])
    assert n == int(text.test["twin_n"]) >= 60
    # the text-only model is near chance; GAL-Rec far above it: z > 4 means p < 3e-5
    assert gal.test["twin_acc"] > 0.75
    assert two_proportion_z(gal.test["twin_acc"], text.test["twin_acc"], n) > 4.0
    assert gal.test["ndcg@10"] > text.test["ndcg@10"]
    # the run directory holds what the docs promise
    for name in ("config.yaml", "metrics.jsonl", "result.json", "features.npy", "best", "last"):
        assert (tmp_path / "gal" / name).exists(), name
    records = [json.loads(line) for line in (tmp_path / "gal" / "metrics.jsonl").open()]
    assert "valid/ndcg@10" in records[0] and records[0]["step"] == 0  # the prior, validated
    record = next(r for r in records if "train/loss" in r)
    for key in ("l0", "l1", "l2", "l3", "loss", "lr", "queue_fill_user", "prompts_per_s",
                "tokens_per_s", "data_wait_share"):  # fmt: skip
        assert f"train/{key}" in record, key


@pytest.mark.slow
def test_cli_train_recommend_export(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    overrides = [
        "model.backbone=tiny-bert", "model.cf_features=none", "model.score_prior=none",
        "train.steps=3", "train.eval_every=3", "train.progress=false", "prompts.fanouts=[3, 2]",
        "data.generator={num_users: 60, num_twin_groups: 8, num_ordinary_items: 10, "
        "min_interactions: 5, max_interactions: 8}",
    ]  # fmt: skip
    result = runner.invoke(main, ["train", "--config", "gal_rec", "--out", str(out), *overrides])
    assert result.exit_code == 0, result.output
    assert "ndcg@10" in result.output
    result = runner.invoke(main, ["recommend", str(out), "--user", "0", "-k", "5"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line[:4].strip().rstrip(".").isdigit()]
    assert len(lines) == 5
    result = runner.invoke(main, ["export", str(out), "--out", str(tmp_path / "emb")])
    assert result.exit_code == 0, result.output
    import numpy as np

    users = np.load(tmp_path / "emb" / "users.npy")
    items = np.load(tmp_path / "emb" / "items.npy")
    assert users.shape[0] == 60 and items.shape[0] == 26 and users.shape[1] == items.shape[1]


def test_cli_config_error_names_key(tmp_path):
    result = CliRunner().invoke(main, ["train", "--config", "gal_rec", "train.stepz=3"])
    assert result.exit_code == 2
    assert "train.stepz" in result.output and "train.steps" in result.output
    result = CliRunner().invoke(main, ["train", "--config", "nope"])
    assert result.exit_code == 2 and "gal_rec" in result.output


@pytest.mark.slow
def test_registry_trains_and_reopens_language_models(tmp_path):
    import torch
    from galrec.data.semantic_gap import SemanticGapConfig, generate_semantic_gap
    from galrec.experiments.registry import get_model, open_run
    from galrec.experiments.spec import TrainRequest

    data = generate_semantic_gap(
        SemanticGapConfig(num_users=60, num_twin_groups=8, num_ordinary_items=10,
                          min_interactions=5, max_interactions=8)
    )  # fmt: skip
    config = tiny_config(
        tmp_path, "gal_rec", "train.steps=3", "model.cf_features=none", "model.score_prior=none"
    ).to_dict()
    spec = get_model("gal_rec")
    assert spec.kind == "method" and get_model("no_hop2").kind == "ablation"
    request = TrainRequest(
        dataset=data, dataset_dir=None, seed=0, run_dir=tmp_path / "r", config=config
    )
    trained = spec.train(request)
    scorer, meta = open_run(tmp_path / "r")
    assert meta["model"] == "gal_rec" and meta["seed"] == 0
    users = torch.arange(5)
    scores = scorer.score_users(users)
    assert scores.shape == (5, data.num_items)
    assert torch.allclose(scores, trained.scorer.score_users(users), atol=1e-5)
    # compare retrains in place a run it does not reuse: the old run's files are cleared first
    again = spec.train(request)
    assert torch.allclose(again.scorer.score_users(users), scores, atol=1e-5)


@pytest.mark.slow
def test_quickstart_prints_the_table(tmp_path):
    result = CliRunner().invoke(
        main, ["quickstart", "--backbone", "tiny-bert", "--steps", "3", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    table = result.output[result.output.index("test split, full ranking") :]
    rows = {}
    for name in ("popularity", "lightgcn", "text_lm", "id_lm", "gal_rec"):
        row = next(line for line in table.splitlines() if line.startswith(name))
        recall, ndcg, twin, chance = (float(x) for x in row.split()[1:])
        assert 0.0 <= ndcg <= recall <= 1.0 and 0.0 <= twin <= 1.0 and chance == 0.5
        rows[name] = ndcg
    for name in ("text_lm", "id_lm", "gal_rec"):
        assert (tmp_path / name / "result.json").is_file()
    # The LightGCN row is the LightGCN baseline as `galrec compare` trains it at this seed.
    from galrec.baselines import fit_lightgcn
    from galrec.baselines.lightgcn import LightGCNConfig
    from galrec.config import default_config
    from galrec.data.prepared import PreparedDataset
    from galrec.evaluation.evaluate import evaluate

    data = PreparedDataset.load(tmp_path / "gal_rec" / "dataset")
    config = LightGCNConfig.from_dict({**default_config("lightgcn"), "seed": 0, "device": "cpu"})
    fit = fit_lightgcn(
        data.train.users, data.train.items, data.num_users, data.num_items, config,
        valid=(data.valid.users, data.valid.items),
    )  # fmt: skip
    expected = evaluate(fit.scorer(), data, split="test", ks=(10,)).metrics["ndcg@10"]
    assert abs(rows["lightgcn"] - expected) < 5e-5
