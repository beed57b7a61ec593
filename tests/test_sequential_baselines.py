"""Sequential baselines (SASRec, GRU4Rec): they learn next-item structure, attend only to the
past, never see the held-out interaction, and reopen from their run directories unchanged."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from galrec.baselines import PopularityScorer, SequentialScorer, build_model
from galrec.baselines.sequential import training_windows
from galrec.data.sequences import Histories, histories
from galrec.evaluation.evaluate import EvalResult, evaluate
from galrec.experiments.compare import run_compare
from galrec.experiments.registry import open_run
from synthetic_graph import single_thread

MODELS = ("sasrec", "gru4rec")
TINY = {
    "dim": 32,
    "max_len": 8,
    "dropout": 0.1,
    "epochs": 40,
    "batch_size": 64,
    "lr": 0.01,
    "eval_every": 5,
    "patience": 2,
}
CONFIGS = {"sasrec": {**TINY, "num_blocks": 1, "ffn_dim": 32}, "gru4rec": TINY}


@dataclass
class Split:
    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray


@dataclass
class SequenceData:
    num_users: int
    num_items: int
    train: Split
    valid: Split
    test: Split


def cyclic_sequences(
    num_users: int = 200, num_items: int = 40, length: int = 12, seed: int = 0
) -> SequenceData:
    """Each user walks one fixed cycle of the items from a random start, so the next item is
    always the successor of the last one; the last two steps are validation and test. Training
    rows are shuffled: only the timestamps give the order."""
    rng = np.random.default_rng(seed)
    cycle = rng.permutation(num_items)
    starts = rng.integers(num_items, size=num_users)
    items = cycle[(starts[:, None] + np.arange(length)) % num_items].ravel()
    users = np.repeat(np.arange(num_users), length)
    step = np.tile(np.arange(length), num_users)
    stamps = 1000 + 10 * step + users % 7
    parts = [step < length - 2, step == length - 2, step == length - 1]
    train, valid, test = (Split(users[p], items[p], stamps[p]) for p in parts)
    order = rng.permutation(len(train.users))
    train = Split(train.users[order], train.items[order], train.timestamps[order])
    return SequenceData(num_users, num_items, train, valid, test)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with single_thread():
        yield


@pytest.fixture(scope="module")
def data() -> SequenceData:
    return cyclic_sequences()


@pytest.fixture(scope="module")
def comparison(data, tmp_path_factory):
    """popularity, SASRec and GRU4Rec trained and tested by ``galrec compare``'s code."""
    out = tmp_path_factory.mktemp("compare-seq")
    result = run_compare(
        data,
        ["popularity", *MODELS],
        seeds=[0],
        out_dir=out,
        dataset_name="cyclic",
        ks=(1, 10),
        configs=CONFIGS,
        device="cpu",
        log=lambda _: None,
    )
    return out, result


def run_dir(comparison, model: str):
    return comparison[0] / "runs" / model / "seed0"


@pytest.mark.parametrize("model", MODELS)
def test_learns_the_next_item_and_beats_popularity(data, comparison, model: str) -> None:
    summary = comparison[1].summary()
    popularity = summary["popularity"]["ndcg@10"][0]
    assert summary[model]["ndcg@10"][0] > popularity + 0.5, (summary[model], popularity)
    assert summary[model]["hr@1"][0] > 0.9
    scorer, meta = open_run(run_dir(comparison, model))
    assert meta["model"] == model and 1 <= meta["best_epoch"] <= meta["config"]["epochs"]
    # Validation is scored from the training items alone, so its next item is found as well.
    assert evaluate(scorer, data, split="valid", ks=(1,)).metrics["hr@1"] > 0.9
    history = comparison[1].runs_of(model)[0].history
    assert history[0]["loss"] > history[-1]["loss"]
    assert any("valid_ndcg@10" in record for record in history)


def test_split_rule_valid_never_sees_the_valid_item_test_ends_with_it(data, comparison) -> None:
    scorer, _ = open_run(run_dir(comparison, "sasrec"))
    assert isinstance(scorer, SequentialScorer)
    users = torch.arange(data.num_users)
    last_train = np.array([histories(data, "train").of(u)[-1] for u in range(data.num_users)])
    valid_inputs = scorer.for_split(data, "valid").sequences(users).numpy() - 1
    test_inputs = scorer.for_split(data, "test").sequences(users).numpy() - 1
    valid_item = data.valid.items[np.argsort(data.valid.users)]
    test_item = data.test.items[np.argsort(data.test.users)]
    assert np.array_equal(valid_inputs[:, -1], last_train)
    assert not (valid_inputs == valid_item[:, None]).any()
    assert np.array_equal(test_inputs[:, -1], valid_item)
    assert np.array_equal(test_inputs[:, -2], last_train)
    assert not (test_inputs == test_item[:, None]).any()
    # Each split's top item follows its own last input: valid -> valid item, test -> test item.
    for split, item in (("valid", valid_item), ("test", test_item)):
        top = scorer.for_split(data, split).score_users(users).argmax(1).numpy()
        assert (top == item).mean() > 0.9, split


def test_a_trained_model_refuses_to_score_without_a_split(data) -> None:
    scorer = SequentialScorer(build_model("sasrec", data.num_items, CONFIGS["sasrec"]))
    with pytest.raises(RuntimeError, match="for_split"):
        scorer.score_users(torch.arange(3))


@pytest.mark.parametrize("model", MODELS)
def test_a_position_sees_only_the_past(model: str) -> None:
    net = build_model(model, 30, CONFIGS[model]).eval()
    sequences = torch.tensor([[0, 0, 3, 5, 7, 9, 11, 13], [1, 2, 3, 4, 5, 6, 7, 8]])
    changed = sequences.clone()
    changed[:, 5] = 20
    with torch.no_grad():
        before, after = net.encode(sequences), net.encode(changed)
    assert torch.allclose(before[:, :5], after[:, :5], atol=1e-6)
    assert not torch.allclose(before[:, 5:], after[:, 5:], atol=1e-3)


@pytest.mark.parametrize("model", MODELS)
def test_left_padding_does_not_change_the_output(model: str) -> None:
    net = build_model(model, 30, CONFIGS[model]).eval()
    short = torch.tensor([[4, 8, 15, 16, 23]])
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.int64), short], 1)
    with torch.no_grad():
        assert torch.allclose(net.encode(short), net.encode(padded)[:, 3:], atol=1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_save_and_load_give_identical_scores(data, tmp_path, model: str) -> None:
    scorer = SequentialScorer(build_model(model, data.num_items, {**CONFIGS[model], "seed": 3}))
    scorer.save(tmp_path / "model.safetensors")
    loaded = SequentialScorer.load(tmp_path / "model.safetensors")
    users = torch.arange(data.num_users)
    for split in ("valid", "test"):
        assert torch.equal(
            scorer.for_split(data, split).score_users(users),
            loaded.for_split(data, split).score_users(users),
        )


@pytest.mark.parametrize("model", MODELS)
def test_reopened_runs_reproduce_the_compare_evaluation(data, comparison, model: str) -> None:
    scorer, _ = open_run(run_dir(comparison, model))
    saved = EvalResult.load(run_dir(comparison, model) / "eval_test")
    again = evaluate(scorer, data, split="test", ks=saved.ks, device="cpu")
    for name, values in saved.per_user.items():
        assert np.array_equal(values, again.per_user[name]), name


def test_same_seed_same_initialisation() -> None:
    first = build_model("sasrec", 30, CONFIGS["sasrec"])
    torch.rand(5)  # whatever ran before must not matter
    second = build_model("sasrec", 30, CONFIGS["sasrec"])
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_training_windows_make_every_item_but_the_first_a_target_once() -> None:
    history = Histories(
        indptr=np.array([0, 5, 6, 9]), items=np.array([10, 11, 12, 13, 14, 7, 1, 2, 3])
    )
    inputs, targets = training_windows(history, max_len=2)
    # User 0 (10..14) gives two windows, user 1 (one item) none, user 2 (1, 2, 3) one.
    assert inputs.tolist() == [[13, 14], [11, 12], [2, 3]]  # ids + 1, 0 pads
    assert targets.tolist() == [[13, 14], [11, 12], [2, 3]]
    inputs, targets = training_windows(history, max_len=3, stride=1)
    counted = targets[targets >= 0]
    assert sorted(counted.tolist()) == [2, 3, 11, 12, 13, 14]
    # With stride 1 every target has the full context before it.
    assert inputs[0].tolist() == [12, 13, 14] and targets[0].tolist() == [-1, -1, 14]


def test_popularity_is_a_weak_floor_on_cyclic_data(data) -> None:
    scorer = PopularityScorer.fit(data.train.items, data.num_items)
    assert evaluate(scorer, data).metrics["ndcg@10"] < 0.4
