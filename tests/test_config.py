"""Config: YAML + dotted overrides; errors name the key and the allowed keys or values."""

from __future__ import annotations

from importlib import resources

import pytest
from galrec.config import Config, ConfigError, config_from_dict, load_config


def test_defaults_follow_method():
    """The defaults docs/method.md describes (the CPU budget's)."""
    cfg = load_config()
    assert cfg.loss.temperature == 0.07 and cfg.loss.momentum == 0.995
    assert cfg.loss.queue_size == 1024 and cfg.prompts.fanouts == [10, 2]
    assert cfg.train.target == "next" and cfg.model.score_prior == "sasrec+cf+text"
    assert cfg.loss.l0_targets == 3 and cfg.loss.contrastive_batch == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.score_prior=cf", "model.cf_features=none"], r"score_prior=cf needs"),
        (["train.target=random"], r"score_prior=sasrec\+cf\+text needs train.target=next"),
        (["model.score_prior=text", "train.target=random"], r"text parts read the history"),
        (["model.text_prior_decay=0"], r"text_prior_decay in \(0, 1\]"),
        (["model.score_prior=none", "model.lm_score=false"], r"lm_score=false needs"),
        (["loss.contrastive_batch=-1"], r"contrastive_batch"),
        (["model.prior_holdout=-1"], r"prior_holdout: must be 0"),
        (
            ["model.prior_holdout=2", "model.score_prior=cf", "train.target=random"],
            r"prior_holdout needs train.target=next",
        ),
        (["model.prior_holdout=2", "train.cut_window=5"], r"cut_window=5 would cut before"),
    ],
)
def test_prior_and_target_must_agree(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  steps: 50\nloss:\n  l1: 0.0\n")
    cfg = load_config(path, ["train.steps=7", "prompts.fanouts=[5, 3]", "loss.temperature=1"])
    assert cfg.train.steps == 7 and cfg.loss.l1 == 0.0
    assert cfg.prompts.fanouts == [5, 3]
    assert isinstance(cfg.loss.temperature, float)


def test_unknown_key_names_key_and_allowed():
    with pytest.raises(ConfigError, match=r"unknown key 'train.stepz'.*allowed: .*train.steps"):
        load_config(overrides=["train.stepz=3"])
    with pytest.raises(ConfigError, match=r"unknown key 'nope'.*allowed: name, out_dir"):
        load_config(overrides=["nope=1"])


def test_bad_choice_names_allowed_values():
    with pytest.raises(
        ConfigError, match=r"model.projector: 'conv' is not allowed; allowed values: linear, mlp"
    ):
        load_config(overrides=["model.projector=conv"])
    with pytest.raises(ConfigError, match=r"prompts.strategy.*uniform, recent, weighted"):
        load_config(overrides=["prompts.strategy=random"])


def test_bad_types_and_ranges():
    with pytest.raises(ConfigError, match=r"train\.steps: expected an integer"):
        load_config(overrides=["train.steps=many"])
    with pytest.raises(ConfigError, match=r"loss\.queue: expected true or false"):
        load_config(overrides=["loss.queue=3"])
    with pytest.raises(ConfigError, match=r"loss.momentum: must be in \[0, 1\)"):
        load_config(overrides=["loss.momentum=1.5"])
    with pytest.raises(ConfigError, match=r"prompts\.fanouts: expected two"):
        load_config(overrides=["prompts.fanouts=[5]"])
    with pytest.raises(ConfigError, match=r"model\.cf_features"):
        load_config(overrides=["model.cf_features=graph"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(overrides=["train.steps"])


def test_round_trip_through_dict_and_yaml(tmp_path):
    cfg = load_config(overrides=["train.seed=3", "model.backbone=tiny-bert"])
    assert config_from_dict(cfg.to_dict()) == cfg
    cfg.save(tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
    assert Config() != cfg


@pytest.mark.parametrize(
    "name", ["gal_rec", "text_lm", "id_lm", "no_l1", "no_l2", "no_l3", "no_queue", "no_hop2"]
)
def test_bundled_configs_load(name):
    path = resources.files("galrec") / "configs" / f"{name}.yaml"
    cfg = load_config(str(path))
    assert cfg.name == name


def test_numbers_as_yaml_1_2_writes_them(tmp_path):
    # PyYAML reads "1e-4" as a string (YAML 1.1 wants "1.0e-4"); a float field takes it.
    cfg = load_config(overrides=["train.lr=1e-4", "loss.temperature=+5E-2"])
    assert cfg.train.lr == 1e-4 and cfg.loss.temperature == 0.05
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 5e-5\n  weight_decay: .5\n")
    cfg = load_config(path)
    assert cfg.train.lr == 5e-5 and cfg.train.weight_decay == 0.5
    with pytest.raises(ConfigError, match=r"train\.lr: expected a number, got .1e-4x."):
        load_config(overrides=["train.lr=1e-4x"])
    with pytest.raises(ConfigError, match=r"train\.steps: expected an integer"):
        load_config(overrides=["train.steps=1e3"])
