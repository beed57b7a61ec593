"""GAL-Rec, its ablations and the language-model baselines as models of
:mod:`galrec.experiments.registry`.

Each name maps to a packaged training config (``configs/<name>.yaml``, see galrec.config):
``gal_rec`` (the method), ``text_lm`` (L0 only, no ID tokens, no graph), ``id_lm`` (ID tokens
without graph learning, CLLM4Rec-like), the ablations ``no_l1``, ``no_l2``, ``no_l3``,
``no_queue``, ``no_hop2``, and ``no_lm`` / ``frozen_lm`` (the score prior without the language
model / with its frozen title part, nothing trained). ``galrec compare`` trains them through
:class:`galrec.training.trainer.Trainer` on the prepared dataset directory it was given, with the
seed and device it was given; the trained model scores through the same evaluator as every baseline.
Importing this module registers them.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galrec.experiments.spec import ModelSpec, TrainedModel, TrainRequest, register
from galrec.training.rundir import write_run

CACHE = ".galrec-cache"

LANGUAGE_MODELS: dict[str, tuple[str, str]] = {
    "gal_rec": ("method", "GAL-Rec: L0 + L1 + L2 + L3, momentum queue, hop-2 prompts"),
    "text_lm": ("baseline", "text-only LM: L0 only, no ID tokens, no graph prompts"),
    "id_lm": ("baseline", "ID-token LM without graph learning (CLLM4Rec-like)"),
    "no_l1": ("ablation", "GAL-Rec without L1 (user hop-2 vs hop-0/1)"),
    "no_l2": ("ablation", "GAL-Rec without L2 (item hop-2 vs hop-0/1)"),
    "no_l3": ("ablation", "GAL-Rec without L3 (user hop-1 vs item hop-0)"),
    "no_queue": ("ablation", "GAL-Rec without the momentum queue (in-batch negatives)"),
    "no_hop2": ("ablation", "GAL-Rec without hop-2 prompts"),
    "no_lm": ("ablation", "GAL-Rec's ID score prior alone (no language model at all)"),
    "frozen_lm": ("ablation", "GAL-Rec at step 0: the prior with the frozen LM's title part"),
}


class RunScorer:
    """A trained LM run as a :class:`~galrec.evaluation.evaluate.Scorer` and
    :class:`~galrec.evaluation.evaluate.EmbeddingModel`.

    Scores come from the run's L0 head over users' hop-1 prompts. The representations are the
    normalised contrastive outputs ``z``: users from their hop-1 prompts, items from hop-0 (the
    pair that L3 aligns); they are computed on first use and cached.
    """

    def __init__(self, run: Any, scorer: Any = None) -> None:
        self.run = run
        self._scorer = scorer or run.scorer()
        self.num_items = int(run.dataset.num_items)
        self._users: torch.Tensor | None = None
        self._items: torch.Tensor | None = None

    def for_split(self, data: Any, split: str) -> RunScorer:
        """This run scoring ``split``: a sequential model's test prompts show the validation
        item (galrec.data.sequences), its validation prompts never do."""
        scorer = self._scorer.for_split(data, split)
        return self if scorer is self._scorer else RunScorer(self.run, scorer)

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self._scorer.score_users(users).to(users.device)

    def user_embeddings(self) -> torch.Tensor:
        if self._users is None:
            nodes = np.arange(self.run.dataset.num_users)
            self._users = self.run.representations("user", nodes, hop=1).cpu()
        return self._users

    def item_embeddings(self) -> torch.Tensor:
        if self._items is None:
            nodes = np.arange(self.num_items)
            self._items = self.run.representations("item", nodes, hop=0).cpu()
        return self._items

    def representations_of(self, side: str, nodes: np.ndarray) -> torch.Tensor:
        """The representations of some ``nodes`` only ("user": hop-1 prompts, "item": hop-0),
        the rows :meth:`user_embeddings` / :meth:`item_embeddings` would hold for them."""
        return self.run.representations(side, nodes, hop=1 if side == "user" else 0).cpu()


def _history(run_dir: Path) -> list[dict[str, float]]:
    """Training loss per step and validation NDCG per validation, from ``metrics.jsonl``."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    history = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        entry = {"step": float(record["step"])}
        if "train/loss" in record:
            entry["loss"] = float(record["train/loss"])
        for key, value in record.items():
            if key.startswith("valid/"):
                entry["valid_" + key.removeprefix("valid/")] = float(value)
        if len(entry) > 1:
            history.append(entry)
    return history


def with_overrides(config: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``config`` (a parsed YAML mapping) with dotted ``key=value`` overrides merged in."""
    from galrec.config import parse_override

    merged = copy.deepcopy(config)
    for text in overrides:
        key, value = parse_override(text)
        target = merged
        *parents, leaf = key.split(".")
        for part in parents:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"override {text!r}: {part!r} is a value, not a section")
            target = child
        target[leaf] = value
    return merged


def _config(request: TrainRequest, name: str) -> Any:
    from galrec.config import config_from_dict

    options = dict(request.config)
    options["name"] = name
    options["out_dir"] = str(request.run_dir)
    if request.dataset_dir is not None:
        options["data"] = {**options.get("data", {}), "dataset": str(request.dataset_dir)}
    else:  # an in-memory dataset: the run directory keeps a copy, which build_run loads
        save = getattr(request.dataset, "save", None)
        if save is None:
            raise ValueError(f"{name} needs a prepared dataset (directory or PreparedDataset)")
        save(Path(request.run_dir) / "dataset", overwrite=True)
    options["train"] = {
        **options.get("train", {}),
        "seed": request.seed,
        "device": request.device,
        "progress": request.progress,
    }
    return config_from_dict(options)


def _trainer(name: str) -> Any:
    def train(request: TrainRequest) -> TrainedModel:
        from galrec.training.rundir import clear_run
        from galrec.training.trainer import Trainer

        # A run here that compare did not reuse is replaced: cleared before _config writes the
        # dataset copy, so none of its files (dataset, features, best/) leaks into this run.
        clear_run(request.run_dir)
        cfg = _config(request, name)
        start = time.perf_counter()
        # One cache for every model and seed of a comparison (runs/<model>/seed<k>): LightGCN,
        # SASRec and text features are computed once per seed, not once per model.
        trainer = Trainer(cfg, request.run_dir, cache_dir=request.run_dir.parent.parent / CACHE)
        result = trainer.fit()
        seconds = time.perf_counter() - start
        meta = {
            "model": name,
            "dataset": str(request.dataset_dir or Path(request.run_dir) / "dataset"),
            "seed": request.seed,
            "config": cfg.to_dict(),
            "train_seconds": seconds,
            "best_step": result.best_step,
        }
        history = _history(request.run_dir)
        write_run(request.run_dir, meta, history)
        return TrainedModel(
            scorer=RunScorer(trainer.run),
            history=history,
            train_seconds=seconds,
            info={"best_step": result.best_step, "steps": result.steps},
        )

    return train


def open_lm_run(run_dir: Path) -> RunScorer:
    """The scorer of a finished LM run directory (its best checkpoint)."""
    from galrec.training.run import open_run

    return RunScorer(open_run(run_dir))


def _resolver(name: str) -> Any:
    def resolve(config: dict[str, Any]) -> dict[str, Any]:
        """Every option of the run ``config`` gives, defaults included (paths and the
        per-request seed, device and progress left out: compare sets those)."""
        from galrec.config import config_from_dict

        options = config_from_dict({**config, "name": name}).to_dict()
        options.pop("out_dir", None)
        options["data"].pop("dataset", None)
        for key in ("seed", "device", "progress"):
            options["train"].pop(key, None)
        return options

    return resolve


for _name, (_kind, _description) in LANGUAGE_MODELS.items():
    register(
        ModelSpec(
            _name, _kind, _description, _trainer(_name), open_lm_run, resolve=_resolver(_name)
        )
    )
