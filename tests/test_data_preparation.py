"""Preparation: rating threshold, duplicates, k-core fixed point, splits, texts, no leakage."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from galrec.data.errors import EmptyDatasetError
from galrec.data.preparation import Duplicates, PrepareOptions, deduplicate, k_core, prepare
from galrec.data.raw import InteractionBuilder, ItemRecord, RawDataset
from galrec.data.splits import (
    TEST,
    TRAIN,
    VALID,
    SplitMethod,
    SplitOptions,
    leave_one_out,
    ratio_split,
    split_labels,
    temporal_split,
)
from galrec.data.text import TextOptions, build_item_texts, cap_text
from hypothesis import given, settings
from hypothesis import strategies as st


def random_raw(seed: int = 0, users: int = 60, items: int = 40, rows: int = 1500) -> RawDataset:
    rng = np.random.default_rng(seed)
    builder = InteractionBuilder()
    user_column = [f"u{n}" for n in rng.integers(0, users, rows)]
    item_column = [f"i{n}" for n in (rng.zipf(1.6, rows) % items)]
    builder.add(user_column, item_column, rng.integers(0, 50, rows), rng.integers(1, 6, rows))
    records = {f"i{n}": ItemRecord(title=f"Title {n}") for n in range(0, items, 2)}
    return builder.build("random", [], records)


def reference_k_core(users: np.ndarray, items: np.ndarray, ku: int, ki: int) -> np.ndarray:
    """Slow reference: peel one under-connected node at a time until none is left."""
    alive = set(range(len(users)))
    while True:
        user_degree: dict[int, int] = {}
        item_degree: dict[int, int] = {}
        for row in alive:
            user_degree[users[row]] = user_degree.get(users[row], 0) + 1
            item_degree[items[row]] = item_degree.get(items[row], 0) + 1
        weak_user = next((u for u, d in user_degree.items() if d < ku), None)
        if weak_user is not None:
            alive = {row for row in alive if users[row] != weak_user}
            continue
        weak_item = next((i for i, d in item_degree.items() if d < ki), None)
        if weak_item is None:
            break
        alive = {row for row in alive if items[row] != weak_item}
    mask = np.zeros(len(users), dtype=bool)
    mask[list(alive)] = True
    return mask


@pytest.mark.parametrize(("ku", "ki"), [(5, 5), (3, 10), (1, 1), (0, 4)])
def test_k_core_is_the_fixed_point_of_the_reference(ku: int, ki: int) -> None:
    raw = random_raw(seed=ku * 10 + ki, users=50, items=60, rows=400)
    kept = deduplicate(raw.user_codes, raw.item_codes, raw.timestamps, Duplicates.FIRST)
    users, items = raw.user_codes[kept], raw.item_codes[kept]
    mask, rounds = k_core(users, items, ku, ki)
    assert np.array_equal(mask, reference_k_core(users, items, ku, ki))
    assert rounds >= 1
    if mask.any():
        assert np.unique(users[mask], return_counts=True)[1].min() >= ku
        assert np.unique(items[mask], return_counts=True)[1].min() >= ki


def test_deduplicate_keeps_first_or_last_in_time() -> None:
    users = np.array([0, 0, 1, 0, 0])
    items = np.array([5, 6, 5, 5, 5])
    times = np.array([30, 10, 10, 20, 30])
    assert deduplicate(users, items, times, Duplicates.FIRST).tolist() == [1, 2, 3]
    assert deduplicate(users, items, times, Duplicates.LAST).tolist() == [1, 2, 4]


def test_rating_threshold_and_report() -> None:
    raw = random_raw()
    dataset = prepare(raw, PrepareOptions(min_rating=4, user_core=2, item_core=2))
    report = dataset.info["report"]
    assert report["read"] == 1500
    assert report["after_rating_filter"] == int((raw.ratings >= 4).sum())
    assert report["after_k_core"] == dataset.num_interactions
    with pytest.raises(ValueError, match="no ratings"):
        prepare(replace(raw, ratings=None), PrepareOptions(min_rating=3))


def test_empty_result_names_source_and_filters(tmp_path: Path) -> None:
    raw = random_raw()
    raw.sources = [tmp_path / "log.csv"]
    raw.sources[0].write_text("x")
    with pytest.raises(EmptyDatasetError, match=r"log.csv: no interactions left.*1000/1000-core"):
        prepare(raw, PrepareOptions(user_core=1000, item_core=1000))


def test_ids_are_contiguous_and_maps_round_trip() -> None:
    raw = random_raw()
    dataset = prepare(raw, PrepareOptions(user_core=3, item_core=3))
    all_users = np.concatenate([dataset.train.users, dataset.valid.users, dataset.test.users])
    assert set(all_users.tolist()) == set(range(dataset.num_users))
    for index, raw_id in enumerate(dataset.item_ids):
        assert dataset.item_index(raw_id) == index
    with pytest.raises(KeyError, match="unknown user id 'nobody'"):
        dataset.user_index("nobody")


@pytest.mark.parametrize("method", list(SplitMethod))
def test_no_validation_or_test_pair_is_in_training(method: SplitMethod) -> None:
    raw = random_raw(seed=3)  # zipf items: many repeated (user, item) pairs
    dataset = prepare(raw, PrepareOptions(user_core=2, item_core=2, split=SplitOptions(method)))
    train = set(zip(dataset.train.users.tolist(), dataset.train.items.tolist(), strict=True))
    for held_out in (dataset.valid, dataset.test):
        pairs = set(zip(held_out.users.tolist(), held_out.items.tolist(), strict=True))
        assert not pairs & train
    assert len(dataset.valid) > 0 and len(dataset.test) > 0


def test_leave_one_out_takes_the_latest_per_user() -> None:
    users = np.array([0, 0, 0, 0, 1, 1, 2])
    times = np.array([4, 1, 9, 3, 5, 2, 7])
    labels = leave_one_out(users, times)
    assert labels.tolist() == [VALID, TRAIN, TEST, TRAIN, TEST, TRAIN, TRAIN]


def test_leave_one_out_breaks_time_ties_by_input_order() -> None:
    labels = leave_one_out(np.zeros(4, dtype=np.int64), np.array([5, 5, 5, 1]))
    assert labels.tolist() == [TRAIN, VALID, TEST, TRAIN]


def test_temporal_split_cuts_globally_in_time() -> None:
    rng = np.random.default_rng(1)
    times = rng.integers(0, 10_000, 1000)
    labels = temporal_split(times, 0.1, 0.2)
    assert np.bincount(labels).tolist() == [700, 100, 200]
    assert times[labels == TRAIN].max() <= times[labels == VALID].min()
    assert times[labels == VALID].max() <= times[labels == TEST].min()


def test_ratio_split_sizes_seed_and_minimum_training() -> None:
    rng = np.random.default_rng(2)
    users = rng.integers(0, 30, 900)
    labels = ratio_split(users, 0.1, 0.2, seed=7)
    for user in range(30):
        mine = labels[users == user]
        count = len(mine)
        assert (mine == TRAIN).sum() >= 1
        if count >= 10:
            assert (mine == TEST).sum() == round(count * 0.2)
            assert (mine == VALID).sum() == round(count * 0.1)
    assert np.array_equal(labels, ratio_split(users, 0.1, 0.2, seed=7))
    assert not np.array_equal(labels, ratio_split(users, 0.1, 0.2, seed=8))
    tiny = ratio_split(np.array([0, 1, 1]), 0.5, 0.4, seed=0)
    assert (tiny[:1] == TRAIN).all() and (tiny[1:] == TRAIN).sum() == 1


def test_split_options_reject_bad_ratios() -> None:
    with pytest.raises(ValueError, match="sum below 1"):
        SplitOptions(SplitMethod.RATIO, 0.5, 0.5)
    with pytest.raises(ValueError):
        SplitOptions("nonsense")  # type: ignore[arg-type]


def test_item_texts_join_fields_cap_and_count_fallbacks() -> None:
    records = {
        "a": ItemRecord(title="Lamp.", categories=["Home", "Light"], brand="Acme"),
        "b": ItemRecord(title=None, brand=None),
    }
    options = TextOptions(fields=("title", "categories", "brand"), max_chars=40)
    texts, missing = build_item_texts(["a", "b", "c"], records, options)
    assert texts == ["Lamp. Home, Light. Acme", "Item b (no title)", "Item c (no title)"]
    assert missing == 2
    capped = cap_text("word " * 30, 20)
    assert len(capped) <= 20 and capped.endswith("…") and "wor…" not in capped
    with pytest.raises(ValueError, match="text fields"):
        TextOptions(fields=("colour",))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 20)), min_size=1, max_size=80),
    st.sampled_from(list(SplitMethod)),
    st.integers(0, 3),
)
def test_every_split_partitions_and_is_deterministic(
    rows: list[tuple[int, int]], method: SplitMethod, seed: int
) -> None:
    users = np.array([user for user, _ in rows])
    times = np.array([time for _, time in rows])
    options = SplitOptions(method, 0.2, 0.2, seed)
    labels = split_labels(users, times, options)
    assert set(np.unique(labels).tolist()) <= {TRAIN, VALID, TEST}
    assert np.array_equal(labels, split_labels(users, times, options))
    if method is SplitMethod.LEAVE_ONE_OUT:
        for user in np.unique(users):
            mine = labels[users == user]
            assert (mine == TEST).sum() == (len(mine) >= 2)
            assert (mine == VALID).sum() == (len(mine) >= 3)
            held = times[(users == user) & (labels != TRAIN)]
            trained = times[(users == user) & (labels == TRAIN)]
            assert not len(held) or not len(trained) or held.min() >= trained.max()
    if method is SplitMethod.RATIO:
        for user in np.unique(users):
            assert (labels[users == user] == TRAIN).any()
