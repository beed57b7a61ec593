"""compare: training over seeds, the Markdown table, the paired test, run directories."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from galrec.evaluation.evaluate import EvalResult
from galrec.experiments.compare import Comparison, ModelRun, paired_test, run_compare
from galrec.experiments.registry import get_model, known_models, open_run
from galrec.experiments.report import write_report
from synthetic_graph import community_graph, single_thread

TINY = {"epochs": 15, "lr": 0.01, "batch_size": 256, "eval_every": 5, "patience": 2, "dim": 16}


def fixed_run(model: str, seed: int, values: list[float]) -> ModelRun:
    """A run whose per-user NDCG@10 (and every other metric) is ``values``."""
    per_user = {
        f"{metric}@{k}": np.array(values)
        for metric in ("recall", "ndcg", "hr", "mrr")
        for k in (5, 10, 20)
    }
    result = EvalResult(
        mode="full",
        split="test",
        ks=(5, 10, 20),
        users=np.arange(len(values)),
        per_user=per_user,
        num_items=50,
    )
    return ModelRun(model=model, seed=seed, result=result, history=[], train_seconds=1.0)


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    graph = community_graph(num_users=200, num_items=80, seed=1)
    out = tmp_path_factory.mktemp("compare")
    with single_thread():
        result = run_compare(
            graph,
            ["popularity", "mf", "lightgcn"],
            seeds=[0, 1],
            out_dir=out,
            dataset_name="community",
            configs={"mf": TINY, "lightgcn": {**TINY, "num_layers": 2}},
            device="cpu",
            log=lambda _: None,
        )
    return graph, out, result


def test_table_marks_the_best_mean_of_each_column() -> None:
    runs = [
        fixed_run("a", 0, [1.0, 0.0]),
        fixed_run("a", 1, [1.0, 1.0]),
        fixed_run("b", 0, [0.0, 0.0]),
        fixed_run("b", 1, [0.5, 0.5]),
    ]
    table = Comparison(dataset="d", runs=runs, seeds=[0, 1]).table()
    lines = table.splitlines()
    assert lines[0].startswith("| model | Recall@5 | NDCG@5 | HR@5 | MRR@5 | Recall@10")
    # a: seed means 0.5 and 1.0 -> 0.75 ± 0.3536; b: 0.0 and 0.5 -> 0.25 ± 0.3536.
    assert lines[2].split(" | ")[1] == "**0.7500 ± 0.3536**"
    assert lines[3].split(" | ")[1] == "0.2500 ± 0.3536"
    assert lines[2].count("**") == 2 * 12 and "**" not in lines[3]


def test_sampled_columns_are_labelled() -> None:
    run = fixed_run("a", 0, [1.0])
    run.result.mode = "sampled"
    assert "NDCG@10 (sampled)" in Comparison(dataset="d", runs=[run], seeds=[0]).table()


def test_paired_test_detects_a_real_difference_and_not_a_null_one() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(300)
    lift = 0.06 + rng.normal(0, 0.02, 300)
    better = [
        fixed_run("m", 0, list(base + lift - 0.01)),
        fixed_run("m", 1, list(base + lift + 0.01)),
    ]
    same = [fixed_run("b", 0, list(base))]
    test = paired_test(better, same, "ndcg@10")
    assert test.t_pvalue < 1e-6 and test.wilcoxon_pvalue < 1e-6
    assert test.model_mean == pytest.approx((base + lift).mean())
    null = paired_test(same, same, "ndcg@10")
    assert null.t_pvalue == 1.0 and null.wilcoxon_pvalue == 1.0
    other_users = fixed_run("c", 0, [0.1] * 299)
    with pytest.raises(ValueError, match="different users"):
        paired_test(better, [other_users], "ndcg@10")


def test_pairwise_tests_the_reference_against_every_other_model() -> None:
    rng = np.random.default_rng(1)
    base = rng.random(200)
    runs = [
        fixed_run("lightgcn", 0, list(base + 0.2)),
        fixed_run("id_lm", 0, list(base)),
        fixed_run("gal_rec", 0, list(base + 0.05 + rng.normal(0, 0.01, 200))),
        fixed_run("popularity", 0, list(base * 0.5)),
    ]
    pairs = Comparison(dataset="d", runs=runs, seeds=[0]).pairwise()
    # GAL-Rec is the reference even when another model is better; others best first.
    assert [(t.model, t.baseline) for t in pairs] == [
        ("gal_rec", "lightgcn"),
        ("gal_rec", "id_lm"),
        ("gal_rec", "popularity"),
    ]
    assert pairs[0].model_mean < pairs[0].baseline_mean and pairs[0].t_pvalue < 1e-6
    assert pairs[1].model_mean > pairs[1].baseline_mean and pairs[1].wilcoxon_pvalue < 1e-6
    # The headline test is against the best baseline only; the LM id_lm is not one.
    headline = Comparison(dataset="d", runs=runs, seeds=[0]).significance()
    assert headline is not None and headline.baseline == "lightgcn"


def test_compare_trains_every_model_and_seed(comparison) -> None:
    graph, out, result = comparison
    assert result.models == ["popularity", "mf", "lightgcn"]
    assert [(r.model, r.seed) for r in result.runs][:3] == [
        ("popularity", 0),
        ("popularity", 1),
        ("mf", 0),
    ]
    summary = result.summary()
    assert summary["lightgcn"]["ndcg@10"][0] > summary["popularity"]["ndcg@10"][0]
    assert summary["popularity"]["ndcg@10"][1] == 0.0  # deterministic model, same on every seed
    # The best baseline is tested against the best model; the models differ for sure.
    test = result.significance()
    assert test is not None and test.model in ("mf", "lightgcn")
    assert test.baseline != test.model
    # Per-user results are on disk for later tests.
    saved = EvalResult.load(out / "runs" / "mf" / "seed1" / "eval_test")
    np.testing.assert_array_equal(
        saved.per_user["ndcg@10"], result.runs_of("mf")[1].result.per_user["ndcg@10"]
    )
    assert len(saved.users) == graph.num_users
    # Embedding models get alignment/uniformity, popularity has no representations.
    assert result.runs_of("popularity")[0].geometry is None
    geometry = result.runs_of("lightgcn")[0].geometry
    assert geometry is not None and 0 <= geometry.alignment <= 4 and geometry.uniformity < 0


def test_run_directories_reopen_to_the_same_scores(comparison) -> None:
    _, out, result = comparison
    for model in ("popularity", "mf", "lightgcn"):
        scorer, meta = open_run(out / "runs" / model / "seed0")
        assert meta["model"] == model and meta["seed"] == 0
        users = torch.arange(10)
        original = result.runs_of(model)[0]
        reopened = scorer.score_users(users)
        assert reopened.shape == (10, 80)
        if model != "popularity":
            assert meta["config"]["dim"] == 16
        assert original.run_dir == out / "runs" / model / "seed0"
    history = (out / "runs" / "mf" / "seed0" / "history.jsonl").read_text().splitlines()
    assert json.loads(history[0])["epoch"] == 1


def test_report_is_written(comparison) -> None:
    _, out, result = comparison
    path = write_report(result, out, command="galrec compare ...")
    text = path.read_text()
    assert "| model | Recall@5" in text and "**" in text
    assert "Significance:" in text and "Wilcoxon" in text
    reference = result.significance().model
    assert f"Paired tests of {reference} against every other model" in text
    others = [m for m in result.models if m != reference]
    assert all(f"| {m} | " in text.split("Paired tests of")[1] for m in others)
    assert "full ranking over 80 items" in text
    assert "galrec compare ..." in text
    data = json.loads((out / "results.json").read_text())
    assert set(data["summary"]) == {"popularity", "mf", "lightgcn"}
    assert {t["baseline"] for t in data["paired_tests"]} == set(others)
    assert (out / "ndcg_at_10.png").is_file()


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="lightgcn"):
        get_model("no_such_model")
    assert {"popularity", "mf", "lightgcn"} <= set(known_models())


def test_finished_runs_are_reused_and_changed_settings_retrain(tmp_path) -> None:
    graph = community_graph(num_users=120, num_items=50, seed=2)
    messages: list[str] = []

    def compare(mf_config: dict, seeds: list[int]):
        with single_thread():
            return run_compare(
                graph,
                ["popularity", "mf"],
                seeds=seeds,
                out_dir=tmp_path,
                dataset_name="community",
                configs={"mf": mf_config},
                device="cpu",
                log=messages.append,
            )

    first = compare(TINY, [0])
    marker = tmp_path / "runs" / "mf" / "seed0" / "compare_run.json"
    written = marker.stat().st_mtime_ns
    # An interrupted or split compare: seed 0 is on disk, seed 1 is new.
    messages.clear()
    both = compare(TINY, [0, 1])
    assert [m.split(" (")[0] for m in messages if not m.startswith("  ")] == [
        "reusing popularity",
        "training popularity",
        "reusing mf",
        "training mf",
    ]
    assert marker.stat().st_mtime_ns == written
    reused = both.runs_of("mf")[0]
    original = first.runs_of("mf")[0]
    np.testing.assert_array_equal(
        reused.result.per_user["ndcg@10"], original.result.per_user["ndcg@10"]
    )
    assert reused.train_seconds == original.train_seconds
    assert reused.history == original.history and reused.geometry == original.geometry
    # Another config is another experiment: mf trains again, popularity is still reused.
    messages.clear()
    compare({**TINY, "dim": 8}, [0])
    assert [m.split(" (")[0] for m in messages if not m.startswith("  ")] == [
        "reusing popularity",
        "training mf",
    ]


def test_runs_are_not_reused_on_another_prepared_dataset(tmp_path) -> None:
    """Same counts, other data (say another split seed): the manifest tells them apart, and
    a report directory holding the other data's runs is refused rather than mixed."""
    graph = community_graph(num_users=60, num_items=30, seed=3)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    messages: list[str] = []

    def compare(out: str) -> None:
        run_compare(
            graph,
            ["popularity"],
            seeds=[0],
            out_dir=tmp_path / out,
            dataset_dir=data_dir,
            dataset_name="community",
            device="cpu",
            log=messages.append,
        )

    (data_dir / "manifest.json").write_text('{"split_seed": 0}')
    compare("out")
    compare("out")
    (data_dir / "manifest.json").write_text('{"split_seed": 1}')
    with pytest.raises(ValueError, match="out: holds results of another dataset"):
        compare("out")
    compare("other")
    assert [m.split(" (")[0] for m in messages if not m.startswith("  ")] == [
        "training popularity",
        "reusing popularity",
        "training popularity",
    ]


def test_a_language_model_is_reused_only_under_the_same_resolved_defaults() -> None:
    # The packaged gal_rec.yaml names almost no option: the settings compare checks before it
    # reuses a run must hold the defaults it stands for, or a changed default reuses stale runs.
    from galrec.config import default_config
    from galrec.experiments.registry import get_model

    gal_rec = get_model("gal_rec").resolved(default_config("gal_rec"))
    assert gal_rec["model"]["score_prior"] == "sasrec+cf+text"
    assert gal_rec["train"]["steps"] == 150 and "seed" not in gal_rec["train"]
    no_lm = get_model("no_lm").resolved(default_config("no_lm"))
    assert no_lm["model"]["score_prior"] == "sasrec+cf" and no_lm != gal_rec
    frozen = get_model("frozen_lm").resolved(default_config("frozen_lm"))
    assert frozen["model"]["score_prior"] == gal_rec["model"]["score_prior"]
    assert not frozen["model"]["lm_score"] and frozen["train"]["steps"] == 0
    changed = get_model("gal_rec").resolved({**default_config("gal_rec"), "loss": {"l1": 0.5}})
    assert changed["loss"]["l1"] == 0.5 and changed != gal_rec
    baseline = default_config("mf")
    assert get_model("mf").resolved(baseline) == baseline
