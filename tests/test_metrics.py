"""The evaluator: metric values, masking, chunking, sampled mode and saved per-user results."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from galrec.evaluation.evaluate import (
    EvalResult,
    UserItemSets,
    evaluate,
    parse_ks,
    rank_users,
    top_k,
)


class TableScorer:
    """Scores from a fixed ``[num_users, num_items]`` table."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = torch.as_tensor(table, dtype=torch.float32)
        self.num_items = self.table.shape[1]

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.table[users.cpu()]


@dataclass
class Pairs:
    users: np.ndarray
    items: np.ndarray


@dataclass
class Splits:
    num_users: int
    num_items: int
    train: Pairs
    valid: Pairs
    test: Pairs


def sets(pairs: list[tuple[int, int]], num_users: int, num_items: int) -> UserItemSets:
    users = np.array([u for u, _ in pairs], dtype=np.int64)
    items = np.array([i for _, i in pairs], dtype=np.int64)
    return UserItemSets.from_pairs(users, items, num_users, num_items)


def reference_metrics(
    scores: np.ndarray, truth: list[set[int]], masked: list[set[int]], k: int
) -> dict[str, float]:
    """Straightforward per-user loops: sort, drop masked items, walk the top k."""
    totals = {"recall": 0.0, "ndcg": 0.0, "hr": 0.0, "mrr": 0.0}
    evaluated = 0
    for user, relevant in enumerate(truth):
        if not relevant:
            continue
        evaluated += 1
        order = [int(i) for i in np.argsort(-scores[user], kind="stable") if i not in masked[user]]
        top = order[:k]
        hit_ranks = [rank for rank, item in enumerate(top, start=1) if item in relevant]
        totals["recall"] += len(hit_ranks) / len(relevant)
        totals["hr"] += 1.0 if hit_ranks else 0.0
        totals["mrr"] += 1.0 / hit_ranks[0] if hit_ranks else 0.0
        dcg = sum(1.0 / math.log2(rank + 1) for rank in hit_ranks)
        idcg = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
        totals["ndcg"] += dcg / idcg
    return {name: value / evaluated for name, value in totals.items()}


def random_problem(seed: int, num_users: int = 40, num_items: int = 60):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(num_users, num_items))
    truth: list[set[int]] = []
    masked: list[set[int]] = []
    for _ in range(num_users):
        chosen = rng.choice(num_items, size=rng.integers(0, 12), replace=False)
        cut = rng.integers(0, len(chosen) + 1)
        masked.append({int(i) for i in chosen[:cut]})
        truth.append({int(i) for i in chosen[cut:]})
    truth_pairs = [(u, i) for u, items in enumerate(truth) for i in items]
    mask_pairs = [(u, i) for u, items in enumerate(masked) for i in items]
    return (
        scores,
        truth,
        masked,
        sets(truth_pairs, num_users, num_items),
        sets(mask_pairs, num_users, num_items),
    )


def test_hand_computed_case() -> None:
    # User 0 ranks items 0..5 in order; item 0 is a training item, items 2 and 4 are held out.
    # After masking the ranking is 1, 2, 3, 4, 5: hits at ranks 2 and 4.
    scorer = TableScorer(np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]]))
    result = rank_users(scorer, sets([(0, 2), (0, 4)], 1, 6), sets([(0, 0)], 1, 6), ks=(2, 5))
    m = result.metrics
    d2, d4 = 1 / math.log2(3), 1 / math.log2(5)
    assert m["recall@2"] == pytest.approx(0.5)
    assert m["hr@2"] == pytest.approx(1.0)
    assert m["mrr@2"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx(d2 / (1 + d2))
    assert m["recall@5"] == pytest.approx(1.0)
    assert m["mrr@5"] == pytest.approx(0.5)
    assert m["ndcg@5"] == pytest.approx((d2 + d4) / (1 + d2))


def test_miss_gives_zero_and_users_without_truth_are_skipped() -> None:
    scorer = TableScorer(np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]]))
    result = rank_users(scorer, sets([(0, 3)], 2, 4), None, ks=(1, 2))
    assert result.users.tolist() == [0]
    assert all(value == 0.0 for value in result.metrics.values())
    result = rank_users(scorer, sets([(0, 3)], 2, 4), None, ks=(4,))
    assert result.metrics["hr@4"] == 1.0
    assert result.metrics["mrr@4"] == pytest.approx(0.25)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_on_random_data(seed: int) -> None:
    scores, truth, masked, truth_sets, mask_sets = random_problem(seed)
    result = rank_users(TableScorer(scores), truth_sets, mask_sets, ks=(1, 5, 10, 20))
    for k in (1, 5, 10, 20):
        expected = reference_metrics(scores, truth, masked, k)
        for name, value in expected.items():
            assert result.metrics[f"{name}@{k}"] == pytest.approx(value, abs=1e-12), (name, k)


def test_training_item_is_never_recommended() -> None:
    scores, _, masked, truth_sets, mask_sets = random_problem(3)
    # Give every masked item the highest score: it must still never appear in a top-k list.
    for user, items in enumerate(masked):
        for item in items:
            scores[user, item] = 1e6
    users = truth_sets.users_with_items()
    top = top_k(TableScorer(scores), users, mask_sets, k=20)[0]
    for row, user in zip(top, users, strict=True):
        assert not set(row.tolist()) & masked[int(user)]


def test_masking_everything_but_the_target_scores_perfectly() -> None:
    # Training items get the top scores, the held-out item comes right after them.
    scorer = TableScorer(np.array([[5.0, 4.0, 3.0, 2.0, 1.0]]))
    result = rank_users(scorer, sets([(0, 2)], 1, 5), sets([(0, 0), (0, 1)], 1, 5), ks=(1,))
    assert result.metrics == {"recall@1": 1.0, "ndcg@1": 1.0, "hr@1": 1.0, "mrr@1": 1.0}


def test_recommend_pads_when_few_items_remain() -> None:
    scorer = TableScorer(np.array([[1.0, 2.0, 3.0]]))
    top = top_k(scorer, np.array([0]), sets([(0, 2)], 1, 3), k=5)[0]
    assert top.tolist() == [[1, 0, -1, -1, -1]]


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_chunked_equals_unchunked(chunk_size: int) -> None:
    scores, _, _, truth_sets, mask_sets = random_problem(4, num_users=53)
    whole = rank_users(TableScorer(scores), truth_sets, mask_sets, chunk_size=10_000)
    chunked = rank_users(TableScorer(scores), truth_sets, mask_sets, chunk_size=chunk_size)
    assert whole.per_user.keys() == chunked.per_user.keys()
    for name in whole.per_user:
        np.testing.assert_array_equal(whole.per_user[name], chunked.per_user[name])


def test_sampled_mode_is_labelled_and_never_worse_than_full() -> None:
    scores, _, _, truth_sets, mask_sets = random_problem(5)
    scorer = TableScorer(scores)
    full = rank_users(scorer, truth_sets, mask_sets)
    sampled = rank_users(scorer, truth_sets, mask_sets, num_negatives=10, seed=1)
    assert full.mode == "full" and "full ranking" in full.label
    assert sampled.mode == "sampled"
    assert "SAMPLED" in sampled.label and "sampled" in sampled.format()
    assert "10 random negatives" in sampled.candidates
    # Ranking among a subset of the items can only move held-out items up.
    for name in full.per_user:
        assert np.all(sampled.per_user[name] >= full.per_user[name] - 1e-12), name
    again = rank_users(scorer, truth_sets, mask_sets, num_negatives=10, seed=1, chunk_size=3)
    for name in sampled.per_user:
        np.testing.assert_array_equal(sampled.per_user[name], again.per_user[name])


def test_sampled_negatives_avoid_known_items() -> None:
    # One user, held-out item 0 scored lowest of the unmasked items; masked items scored highest.
    # If a masked item were drawn as a negative it would outrank the target and HR@1 would be 0.
    num_items = 50
    table = np.full((1, num_items), -1.0)
    table[0, 0] = 0.0
    table[0, 1:25] = 10.0
    mask = sets([(0, i) for i in range(1, 25)], 1, num_items)
    table[0, 25:] = -5.0
    result = rank_users(TableScorer(table), sets([(0, 0)], 1, num_items), mask, num_negatives=25)
    assert result.metrics["hr@5"] == 1.0
    with pytest.raises(ValueError, match="fewer than num_negatives"):
        rank_users(TableScorer(table), sets([(0, 0)], 1, num_items), mask, num_negatives=26)


def test_fixed_candidates() -> None:
    table = np.array([[0.1, 0.9, 0.5, 0.8, 0.7]])
    truth = sets([(0, 2)], 1, 5)
    result = rank_users(TableScorer(table), truth, None, candidates=np.array([[2, 0, 4]]), ks=(1,))
    assert result.mode == "sampled" and "3 candidates" in result.candidates
    assert result.metrics["mrr@1"] == 0.0  # item 4 (0.7) beats item 2 (0.5)
    result = rank_users(TableScorer(table), truth, None, candidates=np.array([[2, 0]]), ks=(1,))
    assert result.metrics["hr@1"] == 1.0
    with pytest.raises(ValueError, match="missing from its candidate list"):
        rank_users(TableScorer(table), truth, None, candidates=np.array([[0, 4]]))


def test_evaluate_masks_validation_items_when_testing() -> None:
    # Valid item 1 has the top score: masked on test, it is the target on valid.
    data = Splits(
        num_users=1,
        num_items=4,
        train=Pairs(np.array([0]), np.array([0])),
        valid=Pairs(np.array([0]), np.array([1])),
        test=Pairs(np.array([0]), np.array([2])),
    )
    scorer = TableScorer(np.array([[9.0, 8.0, 7.0, 1.0]]))
    assert evaluate(scorer, data, split="test", ks=(1,)).metrics["hr@1"] == 1.0
    assert evaluate(scorer, data, split="valid", ks=(1,)).metrics["hr@1"] == 1.0
    with pytest.raises(ValueError, match="split"):
        evaluate(scorer, data, split="train")


def test_save_and_load_round_trip(tmp_path) -> None:
    scores, _, _, truth_sets, mask_sets = random_problem(6)
    result = rank_users(TableScorer(scores), truth_sets, mask_sets, num_negatives=5)
    result.save(tmp_path)
    loaded = EvalResult.load(tmp_path)
    assert loaded.mode == "sampled" and loaded.ks == result.ks
    np.testing.assert_array_equal(loaded.users, result.users)
    for name in result.per_user:
        np.testing.assert_array_equal(loaded.per_user[name], result.per_user[name])
    assert loaded.metrics == result.metrics


def test_bad_inputs_are_reported() -> None:
    with pytest.raises(ValueError, match="item id 7"):
        sets([(0, 7)], 1, 5)

    class WrongShape:
        num_items = 5

        def score_users(self, users: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(users), 4)

    with pytest.raises(ValueError, match="expected"):
        rank_users(WrongShape(), sets([(0, 1)], 1, 5), None)
    nan_table = np.zeros((1, 5))
    nan_table[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rank_users(TableScorer(nan_table), sets([(0, 1)], 1, 5), None)
    with pytest.raises(ValueError, match="integers"):
        parse_ks("5,ten")
    assert parse_ks("20,5") == (20, 5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu() -> None:
    scores, _, _, truth_sets, mask_sets = random_problem(7)
    cpu = rank_users(TableScorer(scores), truth_sets, mask_sets, device="cpu")
    gpu = rank_users(TableScorer(scores), truth_sets, mask_sets, device="cuda")
    for name in cpu.per_user:
        np.testing.assert_allclose(cpu.per_user[name], gpu.per_user[name])


def test_user_item_sets_give_the_dense_mask_of_any_users() -> None:
    sets = UserItemSets.from_pairs(np.array([0, 2, 2, 0, 1]), np.array([3, 0, 4, 1, 1]), 3, 5)
    mask = sets.mask(np.array([2, 0, 2]), 5)
    expected = [[1, 0, 0, 0, 1], [0, 1, 0, 1, 0], [1, 0, 0, 0, 1]]
    assert mask.dtype == torch.bool and mask.int().tolist() == expected
