"""Models by name: how ``galrec compare`` trains each one and ``galrec evaluate`` reopens it.

Every model is a :class:`ModelSpec`: a ``train`` function that fits the model on a dataset's
training split for one seed, writes a run directory and returns a :class:`TrainedModel` (a
:class:`galrec.evaluation.evaluate.Scorer` plus its training history), and an ``open`` function that
turns such a run directory back into a scorer. Baselines (popularity, MF, LightGCN, SASRec, GRU4Rec)
are built in; the language-model family (GAL-Rec, its ablations, the text-only and ID-token LMs)
is registered by :mod:`galrec.experiments.lm_models` (see :func:`register`), so a new model plugs
into compare/evaluate by name. ``open_run`` also opens the run directories of ``galrec train``
(``config.yaml``).

A baseline run directory holds ``run.json`` (model, dataset path, seed, config, timings),
``history.jsonl`` (one record per epoch) and ``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from galrec.baselines import (
    BaselineFit,
    BPRConfig,
    EmbeddingScorer,
    LightGCNConfig,
    PopularityScorer,
    SequentialFit,
    SequentialScorer,
    build_model,
    fit_lightgcn,
    fit_mf,
    fit_sequential,
)
from galrec.evaluation.evaluate import Scorer
from galrec.experiments.spec import MODELS, ModelSpec, TrainedModel, TrainRequest, register

WEIGHTS_FILE = "model.safetensors"


def get_model(name: str) -> ModelSpec:
    """The model called ``name``; the error lists the known names."""
    _register_language_models()
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def known_models() -> list[str]:
    _register_language_models()
    return sorted(MODELS)


def open_run(run_dir: str | Path) -> tuple[Scorer, dict[str, Any]]:
    """A scorer from a run directory written by a registered model, and its ``run.json``."""
    from galrec.training.rundir import RUN_FILE

    run_dir = Path(run_dir)
    meta_path = run_dir / RUN_FILE
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return get_model(meta["model"]).open(run_dir), meta
    if (run_dir / "config.yaml").is_file():  # a run of `galrec train`
        from galrec.experiments.lm_models import open_lm_run

        scorer = open_lm_run(run_dir)
        config = scorer.run.cfg
        dataset = run_dir / "dataset"
        return scorer, {
            "model": config.name,
            "dataset": str(dataset if dataset.is_dir() else config.data.dataset),
        }
    raise FileNotFoundError(
        f"{run_dir}: no {RUN_FILE} or config.yaml; is this a galrec run directory?"
    )


def _meta(name: str, request: TrainRequest, config: dict[str, Any], seconds: float) -> dict:
    return {
        "model": name,
        "dataset": None if request.dataset_dir is None else str(request.dataset_dir),
        "seed": request.seed,
        "config": config,
        "train_seconds": seconds,
    }


def _train_popularity(request: TrainRequest) -> TrainedModel:
    from galrec.training.rundir import write_run

    start = time.perf_counter()
    data = request.dataset
    scorer = PopularityScorer.fit(data.train.items, data.num_items)
    seconds = time.perf_counter() - start
    write_run(request.run_dir, _meta("popularity", request, {}, seconds), [])
    scorer.save(request.run_dir / WEIGHTS_FILE)
    return TrainedModel(scorer=scorer, history=[], train_seconds=seconds)


def _save_fit(
    name: str, request: TrainRequest, config: dict[str, Any], result: BaselineFit | SequentialFit
) -> TrainedModel:
    """Write the run directory of a fitted baseline (``run.json`` with its best epoch, the
    history, the weights) and return it as a :class:`TrainedModel`; shared by the epoch-trained
    baselines so that their runs look alike."""
    from galrec.training.rundir import write_run

    meta = _meta(name, request, config, result.seconds)
    meta["best_epoch"] = result.best_epoch
    write_run(request.run_dir, meta, result.history)
    scorer = result.scorer()
    scorer.save(request.run_dir / WEIGHTS_FILE)
    return TrainedModel(
        scorer=scorer,
        history=result.history,
        train_seconds=result.seconds,
        info={"best_epoch": result.best_epoch},
    )


def _bpr_trainer(
    name: str, config_type: type[BPRConfig], fit: Callable[..., BaselineFit]
) -> Callable[[TrainRequest], TrainedModel]:
    def train(request: TrainRequest) -> TrainedModel:
        config = config_type.from_dict(
            {**request.config, "seed": request.seed, "device": request.device}
        )
        data = request.dataset
        result = fit(
            data.train.users,
            data.train.items,
            data.num_users,
            data.num_items,
            config,
            valid=(data.valid.users, data.valid.items),
            progress=request.progress,
        )
        return _save_fit(name, request, dataclasses.asdict(config), result)

    return train


def _sequential_trainer(name: str) -> Callable[[TrainRequest], TrainedModel]:
    def train(request: TrainRequest) -> TrainedModel:
        config = {**request.config, "seed": request.seed, "device": request.device}
        model = build_model(name, request.dataset.num_items, config)
        result = fit_sequential(model, request.dataset, progress=request.progress)
        return _save_fit(name, request, dataclasses.asdict(model.config), result)

    return train


def _open_sequential(run_dir: Path) -> Scorer:
    return SequentialScorer.load(run_dir / WEIGHTS_FILE)


def _open_embeddings(run_dir: Path) -> Scorer:
    return EmbeddingScorer.load(run_dir / WEIGHTS_FILE)


def _open_popularity(run_dir: Path) -> Scorer:
    return PopularityScorer.load(run_dir / WEIGHTS_FILE)


register(
    ModelSpec(
        "popularity",
        "baseline",
        "most-consumed training items for everyone",
        _train_popularity,
        _open_popularity,
    )
)
register(
    ModelSpec(
        "mf",
        "baseline",
        "matrix factorisation, BPR loss",
        _bpr_trainer("mf", BPRConfig, fit_mf),
        _open_embeddings,
    )
)
register(
    ModelSpec(
        "lightgcn",
        "baseline",
        "LightGCN, BPR loss, sparse propagation",
        _bpr_trainer("lightgcn", LightGCNConfig, fit_lightgcn),
        _open_embeddings,
    )
)
register(
    ModelSpec(
        "sasrec",
        "baseline",
        "SASRec, causal self-attention over the recent items, full-softmax next-item loss",
        _sequential_trainer("sasrec"),
        _open_sequential,
    )
)
register(
    ModelSpec(
        "gru4rec",
        "baseline",
        "GRU4Rec, a GRU over the recent items, full-softmax next-item loss",
        _sequential_trainer("gru4rec"),
        _open_sequential,
    )
)


def _register_language_models() -> None:
    """Register GAL-Rec and the LM baselines when the training package provides them."""
    try:
        from galrec.experiments import lm_models  # noqa: F401  (registers on import)
    except ImportError:
        return
