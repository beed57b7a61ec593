"""What a model of the registry is, and the table they are registered in.

A :class:`ModelSpec` names a model and says how it trains on a :class:`TrainRequest`
into a :class:`TrainedModel` and how its run directory reopens as a scorer. The built-in
models (:mod:`galrec.experiments.registry`) and the language models
(:mod:`galrec.experiments.lm_models`) register here, so the language models need not
import the registry that lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from galrec.evaluation.evaluate import Scorer, SplitDataset


@dataclass
class TrainRequest:
    """Everything one training run needs."""

    dataset: SplitDataset
    dataset_dir: Path | None
    seed: int
    run_dir: Path
    config: dict[str, Any] = field(default_factory=dict)  # the model's YAML config, parsed
    device: str = "auto"
    progress: bool = False


@dataclass
class TrainedModel:
    """A trained model ready to score, with what happened during training."""

    scorer: Scorer
    history: list[dict[str, float]]
    train_seconds: float
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """A named model: ``kind`` is "baseline", "method" (GAL-Rec) or "ablation"."""

    name: str
    kind: str
    description: str
    train: Callable[[TrainRequest], TrainedModel]
    open: Callable[[Path], Scorer]
    resolve: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """The complete options a config file stands for, defaults filled in (None: the file as
    it is, which for the baselines' packaged files lists every option). ``galrec compare``
    reuses a finished run only when these are unchanged, so a changed default retrains."""

    def resolved(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` with the defaults it leaves out (see ``resolve``)."""
        return config if self.resolve is None else self.resolve(config)


MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> None:
    """Add (or replace) a model under ``spec.name``."""
    if spec.kind not in ("baseline", "method", "ablation"):
        raise ValueError(f"kind must be baseline, method or ablation, got {spec.kind!r}")
    MODELS[spec.name] = spec
