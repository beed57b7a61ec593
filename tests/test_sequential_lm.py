"""GAL-Rec's time-ordered training and its CF score path: histories, next-item targets that
never leak into prompts, the multi-target L0, and a fused score that starts as the CF ranking."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from galrec.data.prepared import Interactions
from galrec.data.sequences import histories
from galrec.model.losses import recommendation_loss
from galrec.model.objective import plan_views
from galrec.training.pipeline import BatchSource
from galrec.training.run import build_run
from train_helpers import tiny_config


class _Data:
    """Three users; user 0 has items 3, 1, 4, 0 in time order (rows deliberately shuffled)."""

    num_users = 3
    num_items = 6
    train = Interactions(
        users=np.array([0, 1, 0, 0, 2, 0, 1]),
        items=np.array([4, 2, 3, 1, 5, 0, 0]),
        timestamps=np.array([30, 5, 10, 20, 1, 40, 6]),
    )
    valid = Interactions(np.array([0, 1]), np.array([5, 3]), np.array([50, 7]))
    test = Interactions(np.array([0, 1]), np.array([2, 4]), np.array([60, 8]))


def test_histories_are_in_time_order_and_follow_the_protocol():
    valid = histories(_Data(), "valid")
    assert valid.of(0).tolist() == [3, 1, 4, 0]
    assert valid.of(1).tolist() == [2, 0]
    test = histories(_Data(), "test")
    assert test.of(0).tolist() == [3, 1, 4, 0, 5]  # the validation item comes last
    assert histories(_Data(), "test", valid_in_test=False).of(0).tolist() == [3, 1, 4, 0]
    for split in ("valid", "test"):  # the item being evaluated is never in the input
        held_out = getattr(_Data, split)
        for user, item in zip(held_out.users, held_out.items, strict=True):
            assert item not in histories(_Data(), split).of(int(user))


def test_recent_lists_newest_first_and_stops_before_the_cut():
    hist = histories(_Data(), "valid")
    offsets, items = hist.recent(np.array([0, 1]), k=2)
    assert offsets.tolist() == [0, 2, 4] and items.tolist() == [0, 4, 0, 2]
    offsets, items = hist.recent(np.array([0, 0]), k=3, cut=np.array([1, 3]))
    assert items[offsets[0] : offsets[1]].tolist() == [3]
    assert items[offsets[1] : offsets[2]].tolist() == [4, 1, 3]
    with pytest.raises(ValueError, match="cut"):
        hist.recent(np.array([1]), k=2, cut=np.array([3]))


def test_multi_target_l0_matches_a_hand_computed_case():
    scores = torch.tensor([[1.0, 2.0, 0.5, -1.0], [0.0, 0.0, 3.0, 1.0]])
    targets = torch.tensor([[1, 2], [3, -1]])
    seen = torch.tensor([[True, False, False, False], [False, False, False, False]])
    row0 = torch.tensor([2.0, 0.5, -1.0])  # item 0 is seen: out of the softmax
    lp0 = row0 - torch.logsumexp(row0, 0)
    lp1 = scores[1] - torch.logsumexp(scores[1], 0)
    expected = -((lp0[0] + lp0[1]) / 2 + lp1[3]) / 2
    got = recommendation_loss(scores, targets, seen)
    assert math.isclose(float(got), float(expected), rel_tol=1e-6)
    # One target per row is plain cross-entropy.
    one = recommendation_loss(scores, torch.tensor([1, 3]))
    assert math.isclose(float(one), float(F.cross_entropy(scores, torch.tensor([1, 3]))))
    with pytest.raises(ValueError, match="at least one target"):
        recommendation_loss(scores, torch.tensor([[1, 2], [-1, -1]]))


@pytest.fixture(scope="module")
def sequential_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("seq")
    cfg = tiny_config(
        out,
        "gal_rec",
        "train.target=next",
        "loss.l0_targets=3",
        "model.score_prior=cf",
        "model.cf_epochs=5",
        "prompts.max_length=128",
    )
    return build_run(cfg, out)


def test_next_item_prompts_never_show_the_target_or_a_later_item(sequential_run):
    run = sequential_run
    source = BatchSource(run, plan_views(run.cfg.loss))
    hist = source.history
    position = {}  # (user, item) -> position in the user's history
    for user in range(hist.num_users):
        for pos, item in enumerate(hist.of(user)):
            position[(user, int(item))] = pos
    num_users = run.dataset.num_users
    checked = 0
    for index in range(6):
        batch = source(index)
        users = batch.ids.users.numpy()
        targets = batch.ids.l0_targets.numpy()
        seen = batch.ids.seen.numpy()
        for view in ("user1", "user2"):
            node_ids = batch.views[view]["node_ids"].numpy()  # user2: the contrastive rows
            for row, user in enumerate(users[: len(node_ids)]):
                cut = position[(int(user), int(targets[row, 0]))]
                shown = [n - num_users for n in node_ids[row] if n >= num_users]
                assert shown, "a history prompt shows at least one item"
                assert all(position[(int(user), item)] < cut for item in shown)
                later = [t for t in targets[row] if t >= 0]
                assert all(t not in shown for t in later)
                checked += 1
        for row, user in enumerate(users):  # targets are the next items, in order
            cut = position[(int(user), int(targets[row, 0]))]
            expected = hist.of(int(user))[cut : cut + 3].tolist()
            assert targets[row][targets[row] >= 0].tolist() == expected
            assert sorted(np.flatnonzero(seen[row]).tolist()) == sorted(
                hist.of(int(user))[:cut].tolist()
            )
    assert checked > 0


def test_eval_prompts_show_the_validation_item_only_when_testing(sequential_run):
    run = sequential_run
    data = run.dataset
    num_users = data.num_users
    users = np.asarray(data.valid.users)[:8]
    valid_items = dict(zip(data.valid.users.tolist(), data.valid.items.tolist(), strict=True))
    for split, expect_valid in (("valid", False), ("test", True)):
        tokens = run.views.tokens("user", users, hop=1, split=split)
        for row, user in enumerate(users):
            shown = [n - num_users for n in tokens["node_ids"][row].tolist() if n >= num_users]
            assert (valid_items[int(user)] in shown) is expect_valid
            assert shown[0] == histories(data, split).of(int(user))[-1]  # newest first


def test_fused_score_at_step_zero_ranks_like_the_cf_model(sequential_run):
    run = sequential_run
    prior = run.model.prior
    assert prior is not None and float(prior.log_scale.detach()[0]) != 0.0  # calibrated
    cf = prior.part(0)
    users = torch.arange(run.dataset.num_users)
    scores = run.scorer().score_users(users)
    raw = cf.user_vectors @ cf.item_vectors.T
    assert torch.equal(scores.argsort(1, descending=True), raw.argsort(1, descending=True))
    assert torch.allclose(scores, prior.log_scale.detach().exp() * raw, atol=1e-5)


def test_lm_term_learns_and_lm_score_off_keeps_the_cf_ranking(tmp_path):
    from galrec.training.trainer import Trainer

    common = (
        "train.target=next", "model.score_prior=cf", "model.cf_epochs=5", "train.steps=4",
        "train.eval_every=0",
    )  # fmt: skip
    trainer = Trainer(tiny_config(tmp_path / "on", "gal_rec", *common))
    trainer.fit()
    assert float(trainer.model.scorer.proj.weight.detach().abs().sum()) > 0
    off = Trainer(tiny_config(tmp_path / "off", "gal_rec", *common, "model.lm_score=false"))
    off.fit()
    assert float(off.model.scorer.proj.weight.detach().abs().sum()) == 0
    cf = off.model.prior.part(0)
    users = torch.arange(off.run.dataset.num_users)
    scores = off.run.scorer().score_users(users)
    raw = cf.user_vectors @ cf.item_vectors.T
    assert torch.equal(scores.argsort(1, descending=True), raw.argsort(1, descending=True))


def test_contrastive_sub_batch_covers_the_first_rows_and_fills_the_queue(tmp_path):
    from galrec.training.trainer import Trainer

    cfg = tiny_config(
        tmp_path, "gal_rec", "loss.contrastive_batch=4", "model.cf_epochs=5", "train.steps=2",
        "train.eval_every=0", "train.target=next",
    )  # fmt: skip
    trainer = Trainer(cfg)
    batch = trainer.source(0)
    assert batch.views["user1"]["input_ids"].shape[0] == cfg.train.batch_size
    for view in ("user0", "user2", "item0", "item1", "item2"):
        tokens = batch.views[view]
        assert tokens["input_ids"].shape[0] == 4
        assert bool(tokens["attention_mask"][:, -1].any())  # no all-padding column kept
    trainer.fit()
    assert trainer.queues is not None
    # Two steps of 4 keys from each of two key views per node type (user0/1, item0/1).
    assert trainer.queues.user.filled == 2 * 2 * 4
    assert trainer.queues.item.filled == 2 * 2 * 4


def test_validation_sample_is_fixed_by_the_seed(sequential_run):
    import dataclasses

    run = sequential_run
    valid_users = np.unique(run.dataset.valid.users)
    small = dataclasses.replace(run.cfg.train, eval_users=20)
    run_small = dataclasses.replace(run, cfg=dataclasses.replace(run.cfg, train=small))
    sample = run_small.validation_users()
    assert sample is not None and len(sample) == 20 and set(sample) <= set(valid_users)
    assert np.array_equal(sample, run_small.validation_users())
    other_seed = dataclasses.replace(small, seed=1)
    other = dataclasses.replace(run, cfg=dataclasses.replace(run.cfg, train=other_seed))
    assert not np.array_equal(sample, other.validation_users())
    assert run.validation_users() is None  # 1,000 >= the users there are: validate on all


def test_sasrec_prior_starts_from_sasrec_and_never_reads_the_target(tmp_path):
    from galrec.baselines.sequential import SequentialScorer
    from galrec.evaluation.evaluate import scorer_for_split

    cfg = tiny_config(
        tmp_path / "run", "gal_rec", "train.target=next", "model.score_prior=sasrec",
        "model.cf_epochs=5", "model.sasrec_epochs=3",
    )  # fmt: skip
    run = build_run(cfg, tmp_path / "run")
    prior = run.model.prior.part(0)
    scale = run.model.prior.log_scale.detach().exp()
    assert (tmp_path / "run" / "prior.safetensors").is_file()
    sasrec = SequentialScorer(prior.model)
    users = torch.arange(run.dataset.num_users)
    for split in ("valid", "test"):  # step 0: exactly SASRec's ranking, split by split
        fused = scorer_for_split(run.scorer(), run.dataset, split).score_users(users)
        alone = scorer_for_split(sasrec, run.dataset, split).score_users(users)
        assert torch.allclose(fused, scale * alone, atol=1e-4)
    # Training states read only the items before the cut: changing the target and everything
    # after it leaves them unchanged.
    history = histories(run.dataset, "train")
    user = int(np.argmax(history.lengths()))
    cut = torch.tensor([3])
    before = prior.user_states(torch.tensor([user]), "train", cut)
    start = history.indptr[user]
    saved = history.items[start + 3 :].copy()
    history.items[start + 3 : history.indptr[user + 1]] = 0
    prior._histories["train"] = history
    assert torch.equal(before, prior.user_states(torch.tensor([user]), "train", cut))
    history.items[start + 3 :] = saved
    # A finished run reopens the same prior from its own copy, without retraining.
    reopened = build_run(cfg, tmp_path / "run", write=False).model.prior.part(0)
    assert torch.equal(reopened.item_vectors, prior.item_vectors)


def test_text_prior_weighs_the_latest_titles_and_never_reads_the_target():
    from galrec.model.prior import TextPart

    text = torch.randn(6, 8, generator=torch.Generator().manual_seed(3))
    part = TextPart(text, _Data(), items=2, decay=0.5)
    unit = F.normalize(text - text.mean(0), dim=-1)
    assert torch.allclose(part.item_vectors, unit)
    # User 0 read 3, 1, 4, 0 before validation and the validation item 5 before test.
    state = part.user_states(torch.tensor([0]), "valid")[0]
    assert torch.allclose(state, unit[0] + 0.5 * unit[4], atol=1e-6)
    state = part.user_states(torch.tensor([0]), "test")[0]
    assert torch.allclose(state, unit[5] + 0.5 * unit[0], atol=1e-6)
    # A training cut at position 2: the items at and after it (4, 0) are never read.
    state = part.user_states(torch.tensor([0]), "train", torch.tensor([2]))[0]
    assert torch.allclose(state, unit[1] + 0.5 * unit[3], atol=1e-6)
    with pytest.raises(ValueError, match="needs the cut"):
        part.user_states(torch.tensor([0]), "train")


def test_default_prior_has_a_text_part_that_no_lm_leaves_out(tmp_path):
    from galrec.model.prior import TextPart

    cfg = tiny_config(tmp_path / "run", "gal_rec", "model.cf_epochs=5", "model.sasrec_epochs=2")
    run = build_run(cfg, tmp_path / "run")
    prior = run.model.prior
    assert [type(p).__name__ for p in prior.parts] == ["SequentialPart", "CFPart", "TextPart"]
    text = prior.part(2)
    assert isinstance(text, TextPart)
    # The title block of features.npy (the frozen backbone's title vectors), item rows.
    feats = torch.from_numpy(np.load(tmp_path / "run" / "features.npy"))
    titles = feats[run.dataset.num_users :, : run.model.backbone.hidden_size]
    assert torch.allclose(text.item_vectors, F.normalize(titles - titles.mean(0), dim=-1))
    no_lm = tiny_config(tmp_path / "no_lm", "no_lm")
    assert no_lm.model.score_prior == "sasrec+cf" and not no_lm.model.lm_score


def test_combined_prior_calibrates_a_mix_no_worse_than_either_part():
    from galrec.model.prior import CFPart, ScorePrior

    g = torch.Generator().manual_seed(0)
    items = torch.randint(0, 30, (400,), generator=g)
    informative = F.one_hot(items, 30).float() * 3 + torch.randn(400, 30, generator=g)
    noise = torch.randn(400, 30, generator=g)
    eye = torch.eye(30)
    parts = [CFPart(informative, eye), CFPart(noise, eye)]
    prior = ScorePrior(parts)
    states = prior.user_states(torch.arange(400), "valid")
    scales = prior.calibrate(states, items)
    mixed = F.cross_entropy(prior(states), items)
    for k in range(2):
        alone = ScorePrior([parts[k]])
        alone.calibrate(alone.user_states(torch.arange(400), "valid"), items)
        assert float(mixed) <= float(F.cross_entropy(alone(parts[k].user_vectors), items)) + 1e-6
    assert scales[0] > 10 * scales[1]  # the noise part is all but switched off


def test_calibration_finds_the_joint_optimum_of_correlated_parts():
    # Two parts that share the signal: the best mix is not found one scale at a time.
    from galrec.model.prior import CFPart, ScorePrior

    g = torch.Generator().manual_seed(2)
    items = torch.randint(0, 40, (500,), generator=g)
    signal = F.one_hot(items, 40).float() * 2
    shared = torch.randn(500, 40, generator=g)
    parts = [
        CFPart(30 * (signal + shared + 0.5 * torch.randn(500, 40, generator=g)), torch.eye(40)),
        CFPart(0.1 * (signal - shared + 0.5 * torch.randn(500, 40, generator=g)), torch.eye(40)),
    ]
    prior = ScorePrior(parts)
    states = prior.user_states(torch.arange(500), "valid")
    prior.calibrate(states, items)
    found = float(F.cross_entropy(prior(states), items))
    raw = prior.part_scores(states)
    grid = torch.logspace(-4, 2, 61)
    best_on_grid = min(
        float(F.cross_entropy(a * raw[0] + b * raw[1], items)) for a in grid for b in grid
    )
    assert found <= best_on_grid + 1e-4


def test_cut_window_keeps_cuts_among_the_last_positions(sequential_run):
    import dataclasses

    run = sequential_run
    train = dataclasses.replace(run.cfg.train, cut_window=2)
    windowed = dataclasses.replace(run, cfg=dataclasses.replace(run.cfg, train=train))
    assert_cuts_among_the_last(windowed, 2)


def assert_cuts_among_the_last(run, window: int) -> None:
    """Every L0 cut of a few batches lies among the user's last ``window`` training positions
    (and leaves at least one item before it)."""
    source = BatchSource(run, plan_views(run.cfg.loss))
    lengths = source.history.lengths()
    for index in range(4):
        ids = source(index).ids
        users, cut = ids.users.numpy(), ids.cut.numpy()
        assert np.all(cut >= np.maximum(1, lengths[users] - window))
        assert np.all(cut <= lengths[users] - 1)


def test_without_latest_drops_each_users_latest_training_items_keeping_one():
    from galrec.data.sequences import without_latest

    data = _Data()
    held_out = without_latest(data, 2)
    hist = histories(held_out, "valid")
    assert hist.of(0).tolist() == [3, 1]  # 4 and 0 were user 0's latest
    assert hist.of(1).tolist() == [2]  # two items: the older stays
    assert hist.of(2).tolist() == [5]  # one item: kept
    rows = held_out.train
    assert rows.items.tolist() == [2, 3, 1, 5]  # the split's own row order
    assert held_out.valid is data.valid and held_out.test is data.test
    assert len(data.train) == 7  # the original is untouched
    assert without_latest(data, 0) is data


def test_prior_holdout_fits_features_without_the_targets_and_cuts_among_them(tmp_path):
    from galrec.data.sequences import without_latest
    from galrec.model.external import collaborative_features

    cfg = tiny_config(
        tmp_path / "run", "gal_rec", "model.score_prior=cf", "model.cf_epochs=5",
        "model.prior_holdout=2",
    )  # fmt: skip
    run = build_run(cfg, tmp_path / "run")
    cache = tmp_path / "cache"
    held_out = collaborative_features(
        cfg.model, without_latest(run.dataset, 2), cfg.train.seed, cache
    )
    full = collaborative_features(cfg.model, run.dataset, cfg.train.seed, cache)
    assert held_out is not None and full is not None
    prior_cf = run.model.prior.part(0)
    num_users = run.dataset.num_users
    # (Two LightGCN fits in one process agree to about 1e-7 here, not bit for bit.)
    vectors = prior_cf.user_vectors
    assert torch.allclose(vectors, torch.from_numpy(held_out[:num_users]), atol=1e-5)
    assert (vectors - torch.from_numpy(full[:num_users])).abs().max() > 1e-2
    # L0 cuts fall among the two latest training items, the ones the prior never saw.
    assert_cuts_among_the_last(run, 2)


def test_calibration_masks_seen_items_and_keeps_an_informative_part():
    from galrec.model.prior import CFPart, ScorePrior

    g = torch.Generator().manual_seed(1)
    items = torch.randint(0, 20, (300,), generator=g)
    states = F.one_hot(items, 20).float() * 2 + torch.randn(300, 20, generator=g)
    seen = torch.zeros(300, 20, dtype=torch.bool)
    seen[torch.arange(300), (items + 1) % 20] = True  # a masked item in every row
    prior = ScorePrior([CFPart(states, torch.eye(20))])
    (scale,) = prior.calibrate(states, items, seen)
    assert scale > 0.1 and math.isfinite(scale)


def test_no_lm_trains_nothing_and_scores_the_validation_calibrated_prior(tmp_path):
    from galrec.training.trainer import Trainer

    cfg = tiny_config(tmp_path, "no_lm", "model.score_prior=cf", "model.cf_epochs=5")
    assert cfg.train.steps == 0
    trainer = Trainer(cfg)
    result = trainer.fit()
    assert result.steps == 0 and result.best_step == 0
    prior = trainer.model.prior
    assert prior is not None and not prior.log_scale.requires_grad
    cf = prior.part(0)
    users = torch.arange(trainer.run.dataset.num_users)
    expected = prior.log_scale.exp() * (cf.user_vectors @ cf.item_vectors.T)
    assert torch.allclose(trainer.run.scorer().score_users(users), expected, atol=1e-5)


def test_a_zero_lm_term_scores_the_prior_without_encoding_a_prompt(tmp_path, monkeypatch):
    from galrec.training.run import LMScorer

    cfg = tiny_config(tmp_path, "gal_rec", "model.score_prior=cf", "model.cf_epochs=5")
    run = build_run(cfg, tmp_path)
    model, prior = run.model, run.model.prior
    assert prior is not None and model.lm_term_is_zero  # W starts at zero
    users = torch.arange(run.dataset.num_users)
    prior_scores = prior(prior.user_states(users, "valid"))
    # The full path (every prompt encoded, W h_u = 0) gives the prior's scores bit for bit,
    # so skipping it changes nothing.
    term = LMScorer(run).lm_scores(users.tolist())
    assert not term.any()
    assert torch.equal(model.lm_scale * term + prior_scores, prior_scores)

    def no_encoding(*args, **kwargs):
        raise AssertionError("a zero LM term must not encode prompts")

    monkeypatch.setattr(run, "encode", no_encoding)
    assert torch.equal(LMScorer(run).score_users(users), prior_scores)
    with torch.no_grad():
        model.scorer.proj.weight[0, 0] = 1.0  # a trained W: the term counts again
    assert not model.lm_term_is_zero
    with pytest.raises(AssertionError, match="must not encode"):
        LMScorer(run).score_users(users)
    model.lm_scale.zero_()  # a calibrated weight of 0 switches it off again
    assert model.lm_term_is_zero


def test_term_scale_is_the_cross_entropy_optimum_and_zero_for_a_harmful_term():
    from galrec.model.prior import fit_term_scale

    gen = torch.Generator().manual_seed(0)
    base = torch.randn(200, 30, generator=gen)
    items = torch.randint(0, 30, (200,), generator=gen)
    helpful = torch.randn(200, 30, generator=gen)
    helpful[torch.arange(200), items] += 2.0  # points at the held-out items
    scale = fit_term_scale(base, helpful, items)

    def loss(s: float) -> float:
        return float(F.cross_entropy(base + s * helpful, items))

    assert scale > 0.1
    assert loss(scale) <= min(loss(scale * 0.9), loss(scale * 1.1), loss(0.0))
    # A grid over s agrees with Newton's optimum.
    grid = torch.linspace(0, 3 * scale, 301).tolist()
    assert abs(min(grid, key=loss) - scale) <= 3 * scale / 300 + 1e-6
    harmful = -helpful
    assert fit_term_scale(base, harmful, items) == 0.0
    seen = torch.zeros(200, 30, dtype=torch.bool)
    seen[:, 0] = items != 0  # masked items drop out of the softmax, as evaluation masks them
    masked = fit_term_scale(base, helpful, items, seen)
    logits = (base + masked * helpful).masked_fill(seen, float("-inf"))
    nudged = (base + 1.1 * masked * helpful).masked_fill(seen, float("-inf"))
    assert float(F.cross_entropy(logits, items)) <= float(F.cross_entropy(nudged, items))


def test_calibrated_lm_term_trains_alone_and_joins_the_prior_at_its_fitted_weight(tmp_path):
    from galrec.training.trainer import Trainer

    common = (
        "train.target=next", "model.score_prior=cf", "model.cf_epochs=5", "train.steps=4",
        "train.eval_every=2", "model.lm_fusion=calibrated",
    )  # fmt: skip
    trainer = Trainer(tiny_config(tmp_path / "cal", "gal_rec", *common))
    model = trainer.model
    h = torch.randn(3, model.backbone.hidden_size)
    states = model.prior.user_states(torch.arange(3), "valid")
    model.train()  # training scores are the LM's own term: the prior is not added
    lm_only = model.item_scores(h, states)
    assert torch.allclose(lm_only, model.scorer(h, model.external.item_matrix()))
    trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "cal" / "metrics.jsonl").open()]
    scales = [r["valid/lm_scale"] for r in records if "valid/lm_scale" in r]
    assert len(scales) == 3 and all(s >= 0 for s in scales)  # steps 0, 2 and 4
    model.eval()
    fused = model.item_scores(h, states)
    expected = model.lm_scale * model.scorer(h, model.external.item_matrix()) + model.prior(states)
    assert torch.allclose(fused, expected, atol=1e-5)
    # The fitted weight travels with the checkpoint the run keeps.
    assert "lm_scale" in model.trainable_state()
