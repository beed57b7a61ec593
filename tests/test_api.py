"""The Python API (galrec.api) on a tiny GAL-Rec run and on baseline runs of ``galrec compare``:
it serves what the trainer and the evaluator computed, reads new histories, and the
``recommend`` / ``export`` commands sit on it for every kind of run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import galrec
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from galrec.cli import main
from galrec.data import UnknownIdError
from galrec.data.semantic_gap import SemanticGapConfig, generate_semantic_gap
from galrec.data.sequences import Histories, histories
from synthetic_graph import single_thread
from train_helpers import TINY_OVERRIDES, tiny_config

#: A GAL-Rec run in seconds: every part of the score prior, a few steps.
TINY_STEPS = ("train.steps=4", "train.eval_every=4", "model.sasrec_epochs=3")

TINY_BASELINES = {
    "mf": "epochs: 10\nlr: 0.01\nbatch_size: 512\ndim: 16\neval_every: 5\n",
    "lightgcn": "epochs: 10\nlr: 0.01\nbatch_size: 512\ndim: 16\neval_every: 5\n",
    "sasrec": "epochs: 3\ndim: 16\nmax_len: 10\nffn_dim: 32\neval_every: 1\n",
}


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm") / "gal_rec"
    result = galrec.train(tiny_config(root, "gal_rec", *TINY_STEPS), out_dir=root)
    return root, result


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """Popularity, MF, LightGCN and SASRec runs of ``galrec compare`` (seed 0)."""
    root = tmp_path_factory.mktemp("compare")
    dataset = generate_semantic_gap(SemanticGapConfig(num_users=120, num_twin_groups=20, seed=3))
    dataset.save(root / "data")
    args = ["compare", "--dataset", str(root / "data"), "--seeds", "0", "--out", str(root / "out")]
    args += ["--models", "popularity,mf,lightgcn,sasrec", "--no-plots", "--k", "10"]
    for name, text in TINY_BASELINES.items():
        (root / f"{name}.yaml").write_text(text)
        args += ["--config", f"{name}={root / f'{name}.yaml'}"]
    with single_thread():
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return root / "out" / "runs"


def run_of(compared, name: str) -> Path:
    return compared / name / "seed0"


def test_lm_run_serves_what_the_trainer_computed(lm_run) -> None:
    root, result = lm_run
    model = galrec.load(root)
    assert model.name == "gal_rec"
    metrics = model.evaluate("test", ks=(5, 10, 20)).metrics
    for key in ("recall@10", "ndcg@10", "mrr@20"):
        assert metrics[key] == pytest.approx(result.test[key], abs=1e-9), key
    top = model.recommend(["user-00000", 1], k=5)
    assert top.users == ["user-00000", model.dataset.user_ids[1]]
    assert top.items.shape == (2, 5) and len(top.titles[0]) == 5
    assert top.titles[0][0] == model.dataset.item_texts[top.items[0, 0]]
    assert np.all(np.diff(top.scores, axis=1) <= 0)
    # the lists are the best-scored items the user has not seen (training and validation)
    scores = model.score(["user-00000"], list(model.dataset.item_ids))[0]
    seen = histories(model.dataset, "test").of(0)
    scores[seen] = -np.inf
    assert top.items[0].tolist() == np.argsort(-scores, kind="stable")[:5].tolist()
    np.testing.assert_allclose(top.scores[0], scores[top.items[0]], rtol=1e-5)
    # embeddings: the LM term's two sides; the score prior is added on top
    emb = model.embeddings()
    assert emb.users.shape[0] == model.dataset.num_users == len(emb.user_ids)
    prior = model.run.model.prior
    with torch.no_grad():
        prior_scores = prior(prior.user_states(torch.tensor([0]), "test"))[0].numpy()
    full = model.score([0], list(range(model.dataset.num_items)))[0]
    np.testing.assert_allclose(emb.users[0] @ emb.items.T + prior_scores, full, atol=1e-4)


def test_lm_recommend_history_reads_a_new_history(lm_run) -> None:
    model = galrec.load(lm_run[0])
    history = ["item-00003", "item-00010", "item-00042"]
    top = model.recommend_history(history, k=10)
    assert top.users is None and len(top.item_ids[0]) == 10
    assert not set(top.item_ids[0]) & set(history)
    assert np.all(np.isfinite(top.scores))
    # the prior's history parts read a new history as they read a user's; cf is folded in
    prior = model.run.model.prior
    test = histories(model.dataset, "test")
    one = Histories(np.array([0, len(test.of(5))]), test.of(5))
    for part in prior.parts:
        state = part.states_from_history(one)
        if type(part).__name__ == "CFPart":
            expected = part.item_vectors[torch.from_numpy(test.of(5))].mean(0, keepdim=True)
        else:
            expected = part.user_states(torch.tensor([5]), "test")
        torch.testing.assert_close(state, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(UnknownIdError, match="unknown item 'no-such-item'"):
        model.recommend_history(["no-such-item"])
    with pytest.raises(ValueError, match="at least one item"):
        model.recommend_history([])


def test_reading_a_run_writes_nothing(lm_run) -> None:
    root = lm_run[0]
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    galrec.load(root).recommend([0], k=3)
    after = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    assert after == before  # tokenizer.json included: a read does not write


def test_baseline_runs_serve_what_compare_measured(compared) -> None:
    for name in ("popularity", "mf", "lightgcn", "sasrec"):
        run = run_of(compared, name)
        model = galrec.load(run)
        assert model.name == name
        measured = model.evaluate("test", ks=(10,)).metrics["ndcg@10"]
        reported = json.loads((run / "eval_test" / "metrics.json").read_text())["metrics"]
        reported = reported["ndcg@10"]
        assert measured == pytest.approx(reported, abs=1e-9), name
        top = model.recommend([0, 1, 2], k=5)
        assert top.items.shape == (3, 5) and all(len(row) == 5 for row in top.item_ids)
        history = list(model.dataset.item_ids[:4])
        fresh = model.recommend_history(history, k=5)
        assert len(fresh.item_ids[0]) == 5 and not set(fresh.item_ids[0]) & set(history)


def test_baseline_histories_and_embeddings(compared) -> None:
    sasrec = galrec.load(run_of(compared, "sasrec"))
    # a known user's history read as a new one gives that user's own recommendations
    known = sasrec.recommend([7], k=10)
    items = histories(sasrec.dataset, "test").of(7)
    fresh = sasrec.recommend_history([sasrec.dataset.item_ids[i] for i in items], k=10)
    assert fresh.item_ids == known.item_ids
    np.testing.assert_allclose(fresh.scores, known.scores, rtol=1e-5, atol=1e-5)
    for name in ("mf", "lightgcn", "sasrec"):
        model = galrec.load(run_of(compared, name))
        emb = model.embeddings()
        full = model.score([3], list(range(model.dataset.num_items)))[0]
        np.testing.assert_allclose(emb.users[3] @ emb.items.T, full, rtol=1e-4, atol=1e-4)
        assert emb.user_ids[3] == model.dataset.user_ids[3]
    mf = galrec.load(run_of(compared, "mf"))
    emb = mf.embeddings()
    folded = emb.items @ emb.items[[1, 2]].mean(0)  # MF and LightGCN fold a history in
    fresh = mf.recommend_history([emb.item_ids[1], emb.item_ids[2]], k=3, exclude_seen=False)
    np.testing.assert_allclose(fresh.scores[0], np.sort(folded)[::-1][:3], rtol=1e-5)
    with pytest.raises(NotImplementedError, match="popularity has no user and item embeddings"):
        galrec.load(run_of(compared, "popularity")).embeddings()
    with pytest.raises(UnknownIdError, match="unknown user 'nobody'"):
        mf.recommend(["nobody"])


def test_cli_recommend_and_export_work_on_every_run(compared, lm_run, tmp_path) -> None:
    runner = CliRunner()
    for run in (str(run_of(compared, "mf")), str(run_of(compared, "lightgcn")), str(lm_run[0])):
        result = runner.invoke(main, ["recommend", run, "--users", "0,1,2", "-k", "4", "--json"])
        assert result.exit_code == 0, result.output
        lists = json.loads(result.output)
        assert [len(row["items"]) for row in lists] == [4, 4, 4]
        assert {"item", "score", "title"} <= set(lists[0]["items"][0])
        result = runner.invoke(main, ["recommend", run, "--user", "0", "-k", "3"])
        assert result.exit_code == 0, result.output
        assert len(re.findall(r"^\s+\d+\. ", result.output, re.M)) == 3
        out = tmp_path / Path(run).name / "emb"
        result = runner.invoke(main, ["export", run, "--out", str(out)])
        assert result.exit_code == 0, result.output
        users = np.load(out / "users.npy")
        assert users.shape[0] == len(json.loads((out / "user_ids.json").read_text()))
    result = runner.invoke(
        main, ["recommend", str(lm_run[0]), "--history", "item-00001", "-k", "3"]
    )
    assert result.exit_code == 0 and "top 3 for the history" in result.output, result.output


def test_cli_errors_are_one_line(compared, lm_run, tmp_path) -> None:
    runner = CliRunner()
    mf = str(run_of(compared, "mf"))
    result = runner.invoke(main, ["recommend", mf, "--user", "nobody"])
    assert result.exit_code == 2 and "unknown user 'nobody'" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(main, ["recommend", mf, "--user", "0", "--users", "1"])
    assert result.exit_code == 2 and "exactly one of" in result.output
    result = runner.invoke(main, ["export", mf, "--format", "hf", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "mf is a baseline" in result.output
    pop = str(run_of(compared, "popularity"))
    result = runner.invoke(main, ["export", pop, "--out", str(tmp_path / "pop")])
    assert result.exit_code == 2 and "no user and item embeddings" in result.output
    result = runner.invoke(main, ["recommend", str(tmp_path), "--user", "0"])
    assert result.exit_code == 2 and "no run.json or config.yaml" in result.output


def test_train_takes_a_name_a_path_or_a_config(tmp_path) -> None:
    with pytest.raises(ValueError, match="neither a file nor a bundled config"):
        galrec.train("no_such_config")
    cfg = tiny_config(tmp_path / "a", "no_lm", "train.steps=0")
    result = galrec.train(cfg, ["model.sasrec_epochs=2"], out_dir=tmp_path / "a")
    assert galrec.load(result.out_dir).run.cfg.model.sasrec_epochs == 2


def readme_python_block() -> str:
    """The python block of README.md's "Python API" section."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_python_api_runs(tmp_path, monkeypatch) -> None:
    code = readme_python_block()
    line = re.search(r"^overrides = \[[^\]]*\]", code, re.M)
    assert line is not None, "the README block sets `overrides = [...]` on one line"
    tiny = [*TINY_OVERRIDES, *TINY_STEPS]
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace(line.group(0), f"overrides = {tiny!r}"), "README.md", "exec"), {})
    assert (tmp_path / "runs" / "gal_rec" / "best").is_dir()


def test_prepare_reads_files_like_the_command(tmp_path) -> None:
    from galrec.data import PreparedDataset, PrepareOptions

    rows = [f"u{u},i{(3 * u + j) % 12},{j}" for u in range(10) for j in range(5)]
    (tmp_path / "inter.csv").write_text("\n".join(["user_id,item_id,timestamp", *rows]) + "\n")
    options = PrepareOptions(user_core=0, item_core=0)
    data = galrec.prepare("table", tmp_path / "inter.csv", tmp_path / "out", options=options)
    assert (data.name, data.num_users, data.num_items) == ("out", 10, 12)
    assert PreparedDataset.load(tmp_path / "out").num_items == 12
