"""Training configuration: typed dataclasses, YAML loading and dotted ``key=value`` overrides.

Every default of docs/method.md is a field here, so ablations and other readings of the method
are config files, not code. Errors name the offending key and the allowed keys or values.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the key and what is allowed."""


def _choice(default: str, *choices: str) -> Any:
    return field(default=default, metadata={"choices": choices})


@dataclass
class DataConfig:
    """Where the interactions come from."""

    dataset: str = "semantic_gap"
    """``semantic_gap`` (generated) or the directory of a saved ``PreparedDataset``."""
    generator: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the semantic-gap generator (sizes, seed)."""


@dataclass
class PromptConfig:
    """How hop-0/1/2 prompts are sampled and cut (docs/method.md)."""

    fanouts: list[int] = field(default_factory=lambda: [10, 2])
    strategy: str = _choice("uniform", "uniform", "recent", "weighted")
    max_length: int = 64
    neighbor_titles: bool = False
    """Write neighbours' titles into hop-1/2 lists. False lists their ID tokens only (the node
    keeps its title): prompts about a third as long, and the titles' meaning still reaches the
    model through each ID embedding's text feature ``t_v``."""


@dataclass
class ModelConfig:
    """Backbone, LoRA, external ID embeddings and heads (docs/method.md)."""

    backbone: str = "minilm"
    """``minilm``, ``smollm2`` (pip-installed weights), ``tiny-bert``/``tiny-llama`` (random,
    built in code, for tests), or any Hugging Face model name or local path."""
    pooling: str = _choice("auto", "auto", "mean", "last")
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | str | None = None
    """Module names to adapt, or one string for peft: ``all-linear`` (every linear layer but
    the output head) or a regular expression. None picks galrec's per-architecture table
    (attention and MLP projections), and ``all-linear`` for architectures it does not list."""
    gradient_checkpointing: bool = False
    id_tokens: bool = True
    """Write ``<user_u>``/``<item_i>`` tokens into prompts with external embeddings."""
    projector: str = _choice("linear", "linear", "mlp")
    id_residual: bool = True
    """A trainable per-ID residual ``r_v`` (initialised to zero)."""
    cf_features: str = "lightgcn"
    """``lightgcn``, ``none`` or the path of a ``.npy`` of shape [num_users + num_items, d]."""
    cf_dim: int = 64
    cf_epochs: int = 300
    """LightGCN dimension and most epochs (early-stopped on the validation split); the other
    settings are the LightGCN baseline's (configs/lightgcn.yaml), so the defaults give exactly
    the baseline's embeddings at the same seed."""
    score_prior: str = _choice(
        "sasrec+cf+text", "sasrec+cf+text", "sasrec+cf", "sasrec", "cf", "text", "none"
    )
    """Parts of a score added to L0's, ``s = sum_k exp(a_k) <p_u^k, q_i^k> + <W h_u, E_i>``
    with ``W`` zero at step 0, so training starts from their calibrated ranking and the LM
    learns what they lack (galrec.model.prior). ``cf``: the collaborative features' dot product
    (needs ``cf_features``); ``sasrec``: the SASRec baseline; ``text``: the frozen backbone's
    title similarity to the user's latest items (``text_prior_items``, ``text_prior_decay``).
    ``sasrec`` and ``text`` read the history, so they need ``train.target=next``."""
    sasrec_epochs: int = 200
    """At most this many epochs for the ``sasrec`` prior (early-stopped on validation); its
    other settings are the SASRec baseline's (configs/sasrec.yaml)."""
    prior_holdout: int = 0
    """Fit the prior's SASRec and LightGCN (and the CF and user title features) without each
    user's latest ``prior_holdout`` training interactions, and let L0 cut only among them
    (``train.cut_window``), so the LM's targets are ones no part of the prior trained on:
    stacking. 0 fits everything on the whole training split, as the baselines are."""
    text_prior_items: int = 5
    text_prior_decay: float = 0.5
    """The ``text`` part reads the user's latest ``text_prior_items`` items, the j-th most
    recent weighted ``text_prior_decay**j`` (chosen on ml-100k's validation split)."""
    lm_score: bool = True
    """False switches the language model's contribution to the score off (``W`` stays zero):
    the prior alone, the ablation that shows what the LM adds."""
    lm_fusion: str = _choice("residual", "residual", "calibrated")
    """How the LM's term joins the prior. ``residual``: added at weight 1 and trained on top of
    the prior (L0's training scores include it). ``calibrated``: L0 trains the LM's term on its
    own, and at each validation its weight next to the prior is fitted on the validation users
    (the lowest cross-entropy of their validation items, as the prior's scales are), so it
    counts only as far as it ranks held-out items; saved with the checkpoint."""
    head_dim: int = 128


@dataclass
class LossConfig:
    """Weights of L0..L3, InfoNCE temperature, momentum queue (docs/method.md)."""

    l0: float = 1.0
    l0_targets: int = 3
    """Items per prompt that L0 predicts (``train.target=next``: the next ones in time order), a
    multinomial likelihood: more supervision from each forward pass."""
    l1: float = 0.1
    l2: float = 0.1
    l3: float = 0.1
    """lambda1..3: small next to L0, which they regularise (measured on the semantic-gap data)."""
    contrastive_batch: int = 4
    """Rows of each batch that the contrastive terms L1-L3 use (0: all). Their six extra views
    cost several times L0's one, so a small sub-batch (with the queue for negatives, as in
    MoCo) keeps them affordable on a CPU budget."""
    temperature: float = 0.07
    hop2: bool = True
    """False drops 2-hop prompts: L1/L2 then align hop 1 with hop 0."""
    queue: bool = True
    queue_size: int = 1024
    momentum: float = 0.995


@dataclass
class TrainConfig:
    """Optimisation, logging, validation and checkpointing."""

    target: str = _choice("next", "next", "random")
    """L0's target. ``random``: a random training item, the user prompt a uniform sample of the
    others. ``next``: time order, as sequential recommenders train: a cut in the user's history,
    the prompt lists the most recent ``prompts.fanouts[0]`` items before it (newest first), the
    target is the item at the cut; evaluation prompts list the latest items of the history."""
    cut_window: int = 0
    """With ``target=next``: cut only among each user's last ``cut_window`` training positions
    (0: anywhere, or the last ``model.prior_holdout`` when that is set), the part of a history
    most like the held-out next items."""
    steps: int = 150
    """Optimizer steps; 0 evaluates the model as built (the score prior alone, for ``no_lm``)."""
    batch_size: int = 16
    lr: float = 5e-4
    weight_decay: float = 0.01
    """lambda4: decoupled weight decay on the trainable parameters (AdamW)."""
    warmup_steps: int = 10
    grad_accum: int = 1
    clip_norm: float = 1.0
    seed: int = 0
    eval_every: int = 50
    eval_k: int = 10
    eval_users: int = 1000
    """Validation during training (early stopping, the best checkpoint) ranks for a fixed,
    seeded sample of this many users (0: all); the final valid/test numbers use every user."""
    patience: int = 3
    """Stop after this many validations without improvement (0: never stop early)."""
    checkpoint_every: int = 50
    log_every: int = 1
    device: str = "auto"
    threads: int = 0
    """torch intra-op threads; 0: all cores, less those other processes keep busy when the run
    starts (galrec.training.threads; 2 threads beside one busy process ran 1.3-2.7x slower than 1
    on a 2-core machine), and a resumed run keeps the count it had."""
    precision: str = _choice("auto", "auto", "fp32", "bf16")
    """Forward passes under bf16 autocast (``auto``: on CUDA and on CPUs with native bf16)."""
    progress: bool = True
    """Progress on stderr: a bar on a terminal, a line every 30 s in a log file (galrec.progress),
    and a line per setup phase (text features, LightGCN, the score prior) with its duration."""
    tensorboard: bool = False
    """Also log every metrics.jsonl record to ``<run>/tensorboard`` (pip install
    'galrec[tensorboard]')."""


@dataclass
class Config:
    """The whole run: what ``galrec train --config`` reads and saves next to the run."""

    name: str = "gal_rec"
    out_dir: str = "runs/gal_rec"
    data: DataConfig = field(default_factory=DataConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON serialisable)."""
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        """Write the resolved config as YAML (saved with every run)."""
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


#: A float as YAML 1.2 writes it; PyYAML follows YAML 1.1, which needs a dot ("1.0e-4").
_YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")


def _coerce(key: str, value: Any, annotation: Any, choices: tuple[str, ...] | None) -> Any:
    """Check ``value`` against the field's type; return it converted (int -> float, list)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        problems = []
        for option in inner:  # the first type that takes the value
            try:
                return _coerce(key, value, option, choices)
            except ConfigError as problem:
                problems.append(str(problem).removeprefix(f"{key}: "))
        raise ConfigError(f"{key}: {' or '.join(problems)}")
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str) and _YAML12_FLOAT.fullmatch(value.strip()):
            return float(value)  # "1e-4": a number in YAML 1.2, a string to PyYAML (YAML 1.1)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        if choices and value not in choices:
            raise ConfigError(
                f"{key}: {value!r} is not allowed; allowed values: {', '.join(choices)}"
            )
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(f"{key}[{i}]", v, args[0], None) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    raise ConfigError(f"{key}: unsupported field type {annotation!r}")  # pragma: no cover


def _set(obj: Any, dotted: str, value: Any) -> None:
    """Set ``obj.<dotted>`` = value, checking that every part names a field."""
    parts = dotted.split(".")
    target = obj
    for depth, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(target)]
        if part not in names:
            prefix = ".".join(parts[:depth])
            where = f"'{prefix}'" if prefix else "the config"
            allowed = ", ".join(f"{prefix + '.' if prefix else ''}{n}" for n in names)
            raise ConfigError(
                f"unknown key '{dotted}': {where} has no '{part}'; allowed: {allowed}"
            )
        fld = next(f for f in dataclasses.fields(target) if f.name == part)
        current = getattr(target, part)
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(current):
                if not isinstance(value, dict):
                    raise ConfigError(f"{dotted}: expected a mapping of its keys, got {value!r}")
                for k, v in value.items():
                    _set(current, str(k), v)
                return
            annotation = _type_hints(type(target))[part]
            setattr(target, part, _coerce(dotted, value, annotation, fld.metadata.get("choices")))
            return
        if not dataclasses.is_dataclass(current):
            raise ConfigError(
                f"unknown key '{dotted}': '{'.'.join(parts[: depth + 1])}' is a value"
            )
        target = current


def _validate(cfg: Config) -> None:
    """Cross-field checks that types alone cannot express."""
    if len(cfg.prompts.fanouts) != 2 or min(cfg.prompts.fanouts) < 1:
        raise ConfigError(
            f"prompts.fanouts: expected two positive integers, got {cfg.prompts.fanouts}"
        )
    if cfg.train.steps < 0:
        raise ConfigError(f"train.steps: must be 0 (no training) or more, got {cfg.train.steps}")
    positive = {
        "train.batch_size": cfg.train.batch_size,
        "train.grad_accum": cfg.train.grad_accum,
        "loss.queue_size": cfg.loss.queue_size,
        "loss.l0_targets": cfg.loss.l0_targets,
        "model.lora_rank": cfg.model.lora_rank,
        "prompts.max_length": cfg.prompts.max_length,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key}: must be at least 1, got {value}")
    if not 0.0 <= cfg.loss.momentum < 1.0:
        raise ConfigError(f"loss.momentum: must be in [0, 1), got {cfg.loss.momentum}")
    if cfg.loss.temperature <= 0:
        raise ConfigError(f"loss.temperature: must be positive, got {cfg.loss.temperature}")
    if cfg.loss.l0 <= 0 and cfg.loss.l1 <= 0 and cfg.loss.l2 <= 0 and cfg.loss.l3 <= 0:
        raise ConfigError("loss.l0, loss.l1, loss.l2, loss.l3: at least one weight must be > 0")
    cf = cfg.model.cf_features
    prior = cfg.model.score_prior
    if "cf" in prior.split("+") and cf == "none":
        raise ConfigError(f"model.score_prior={prior} needs model.cf_features (lightgcn or a .npy)")
    if {"sasrec", "text"} & set(prior.split("+")) and cfg.train.target != "next":
        raise ConfigError(
            f"model.score_prior={prior} needs train.target=next (its sasrec and text parts "
            "read the history before the target)"
        )
    holdout = cfg.model.prior_holdout
    if holdout < 0:
        raise ConfigError(f"model.prior_holdout: must be 0 (off) or more, got {holdout}")
    if holdout and cfg.train.target != "next":
        raise ConfigError(
            "model.prior_holdout needs train.target=next (its targets are the latest)"
        )
    if holdout and cfg.train.cut_window > holdout:
        raise ConfigError(
            f"train.cut_window={cfg.train.cut_window} would cut before the "
            f"model.prior_holdout={holdout} interactions the prior did not train on"
        )
    if cfg.model.text_prior_items < 1 or not 0.0 < cfg.model.text_prior_decay <= 1.0:
        raise ConfigError(
            "model.text_prior_items must be >= 1 and model.text_prior_decay in (0, 1], got "
            f"{cfg.model.text_prior_items} and {cfg.model.text_prior_decay}"
        )
    if not cfg.model.lm_score and prior == "none":
        raise ConfigError("model.lm_score=false needs a model.score_prior (something must score)")
    if cfg.loss.contrastive_batch < 0:
        raise ConfigError(
            f"loss.contrastive_batch: must be 0 (all) or positive, got {cfg.loss.contrastive_batch}"
        )
    if cf not in ("lightgcn", "none") and not cf.endswith(".npy"):
        raise ConfigError(
            f"model.cf_features: {cf!r} is not allowed; "
            "allowed values: lightgcn, none, a path ending in .npy"
        )


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b=value``; the value is parsed as YAML (``3``, ``0.1``, ``true``, ``[5, 3]``)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.steps=100")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """The defaults, updated by the YAML file at ``path`` (if any), then by ``overrides``."""
    cfg = Config()
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        for key, value in data.items():
            _set(cfg, str(key), value)
    for text in overrides:
        key, value = parse_override(text)
        _set(cfg, key, value)
    _validate(cfg)
    return cfg


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config from ``Config.to_dict()`` output (e.g. a run's saved config)."""
    cfg = Config()
    for key, value in data.items():
        _set(cfg, str(key), value)
    _validate(cfg)
    return cfg


def default_config(name: str) -> dict[str, Any]:
    """The packaged ``configs/<name>.yaml`` as a dict (empty when the model has none)."""
    path = resources.files("galrec") / "configs" / f"{name}.yaml"
    if not path.is_file():
        return {}
    return load_yaml(path.read_text(), f"configs/{name}.yaml")


def load_yaml(text: str, where: str) -> dict[str, Any]:
    values = yaml.safe_load(text) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping of options, got {type(values).__name__}")
    return values


def config_path(name_or_path: str) -> Path:
    """A YAML path, or the name of a bundled config (``gal_rec``, ``text_lm``, ``no_l1`` ...)."""
    import click

    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = resources.files("galrec") / "configs" / f"{name_or_path}.yaml"
    if bundled.is_file():
        return Path(str(bundled))
    names = sorted(
        p.name[:-5]
        for p in (resources.files("galrec") / "configs").iterdir()
        if p.name.endswith(".yaml")
    )
    raise click.BadParameter(
        f"{name_or_path!r} is neither a file nor a bundled config; bundled: {', '.join(names)}",
        param_hint="--config",
    )
