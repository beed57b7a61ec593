"""Train and evaluate several models over seeds on one dataset, and report them side by side.

Every model comes from :mod:`galrec.experiments.registry` by name and is scored by the same
evaluator on the same split (full ranking unless a sampled protocol is asked for, and then
labelled). The report is a Markdown table of mean ± std over seeds with the best value of each
column in bold, a paired significance test of GAL-Rec (or the best model) against the best baseline
over per-user metrics, training and evaluation times, alignment/uniformity of the representations,
and plots.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from galrec.config import default_config
from galrec.evaluation.alignment import AlignmentUniformity, model_geometry
from galrec.evaluation.evaluate import (
    DEFAULT_KS,
    METRICS,
    EmbeddingModel,
    EvalResult,
    SplitDataset,
    evaluate,
    resolve_device,
)
from galrec.experiments.registry import get_model
from galrec.experiments.spec import TrainRequest

PRIMARY_METRIC = "ndcg@10"
# Written into a run directory once its test evaluation is on disk; a later compare with the
# same settings reuses the run instead of training it again.
FINISHED_FILE = "compare_run.json"


@dataclass
class ModelRun:
    """One model trained with one seed and evaluated on the test split."""

    model: str
    seed: int
    result: EvalResult
    history: list[dict[str, float]]
    train_seconds: float
    geometry: AlignmentUniformity | None = None
    run_dir: Path | None = None


@dataclass
class PairedTest:
    """A paired test over users of ``model`` against ``baseline`` on one metric."""

    model: str
    baseline: str
    metric: str
    num_users: int
    model_mean: float
    baseline_mean: float
    t_pvalue: float
    wilcoxon_pvalue: float

    def sentence(self) -> str:
        direction = "higher" if self.model_mean > self.baseline_mean else "lower"
        return (
            f"{self.model} vs {self.baseline} on {self.metric} over {self.num_users} users "
            f"(per-user values averaged over seeds): {self.model_mean:.4f} vs "
            f"{self.baseline_mean:.4f} ({direction}); paired t-test p = {self.t_pvalue:.3g}, "
            f"Wilcoxon signed-rank p = {self.wilcoxon_pvalue:.3g}."
        )


@dataclass
class Comparison:
    """All runs of one ``galrec compare`` invocation."""

    dataset: str
    runs: list[ModelRun]
    seeds: list[int]
    ks: tuple[int, ...] = DEFAULT_KS
    device: str = "cpu"
    dataset_stats: dict[str, int] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(run.model for run in self.runs))

    def runs_of(self, model: str) -> list[ModelRun]:
        return [run for run in self.runs if run.model == model]

    @property
    def mode(self) -> str:
        return self.runs[0].result.mode

    def columns(self) -> list[str]:
        return [f"{metric}@{k}" for k in self.ks for metric in METRICS]

    def summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        """``model -> metric -> (mean, std)`` over seeds (std 0 for a single seed)."""
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for model in self.models:
            runs = self.runs_of(model)
            out[model] = {}
            for column in self.columns():
                values = np.array([run.result.metrics[column] for run in runs])
                std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                out[model][column] = (float(values.mean()), std)
        return out

    def table(self) -> str:
        """The Markdown results table: mean ± std, best mean of each column in bold."""
        summary = self.summary()
        columns = self.columns()
        suffix = " (sampled)" if self.mode == "sampled" else ""
        best = {column: max(summary[m][column][0] for m in self.models) for column in columns}
        header = ["model", *(_column_title(c) + suffix for c in columns), "train s"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for model in self.models:
            cells = [model]
            for column in columns:
                mean, std = summary[model][column]
                text = f"{mean:.4f} ± {std:.4f}"
                cells.append(f"**{text}**" if np.isclose(mean, best[column]) else text)
            seconds = np.mean([run.train_seconds for run in self.runs_of(model)])
            cells.append(f"{seconds:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def ranked(self, metric: str = PRIMARY_METRIC) -> list[str]:
        """The models, best mean first."""
        summary = self.summary()
        return sorted(self.models, key=lambda m: summary[m][metric][0], reverse=True)

    def reference(self, metric: str = PRIMARY_METRIC) -> str | None:
        """The model the tests are about: GAL-Rec when it ran, else the best model."""
        if "gal_rec" in self.models:
            return "gal_rec"
        ranked = self.ranked(metric)
        return ranked[0] if ranked else None

    def significance(self, metric: str = PRIMARY_METRIC) -> PairedTest | None:
        """GAL-Rec (else the best model) against the best other non-ablation model: the
        headline one of :meth:`pairwise`."""
        from galrec.experiments.spec import MODELS

        return next(
            (
                test
                for test in self.pairwise(metric)
                if test.baseline not in MODELS or MODELS[test.baseline].kind == "baseline"
            ),
            None,
        )

    def pairwise(self, metric: str = PRIMARY_METRIC) -> list[PairedTest]:
        """GAL-Rec (else the best model) against every other model, best first: the
        comparisons a reader asks for beyond the headline one (e.g. against the ID-token LM)."""
        reference = self.reference(metric)
        if reference is None:
            return []
        return [
            paired_test(self.runs_of(reference), self.runs_of(other), metric)
            for other in self.ranked(metric)
            if other != reference
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "dataset_stats": self.dataset_stats,
            "seeds": self.seeds,
            "ks": list(self.ks),
            "device": self.device,
            "protocol": self.runs[0].result.label,
            "summary": {
                model: {c: {"mean": m, "std": s} for c, (m, s) in cols.items()}
                for model, cols in self.summary().items()
            },
            "paired_tests": [dataclasses.asdict(test) for test in self.pairwise()],
            "runs": [
                {
                    "model": run.model,
                    "seed": run.seed,
                    "metrics": run.result.metrics,
                    "train_seconds": run.train_seconds,
                    "eval_seconds": run.result.seconds,
                    "run_dir": None if run.run_dir is None else str(run.run_dir),
                    "alignment": None if run.geometry is None else run.geometry.alignment,
                    "uniformity": None if run.geometry is None else run.geometry.uniformity,
                }
                for run in self.runs
            ],
        }


def _column_title(column: str) -> str:
    metric, k = column.split("@")
    names = {"recall": "Recall", "ndcg": "NDCG", "hr": "HR", "mrr": "MRR"}
    return f"{names[metric]}@{k}"


def paired_test(
    model_runs: list[ModelRun], baseline_runs: list[ModelRun], metric: str
) -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank test over users (values averaged over seeds)."""
    from scipy import stats

    def per_user(runs: list[ModelRun]) -> tuple[np.ndarray, np.ndarray]:
        users = runs[0].result.users
        for run in runs[1:]:
            if not np.array_equal(run.result.users, users):
                raise ValueError("runs to pair were evaluated on different users")
        return users, np.mean([run.result.per_user[metric] for run in runs], axis=0)

    users_a, a = per_user(model_runs)
    users_b, b = per_user(baseline_runs)
    if not np.array_equal(users_a, users_b):
        raise ValueError("models to pair were evaluated on different users")
    differences = a - b
    if np.allclose(differences, 0):
        t_p = w_p = 1.0
    else:
        t_p = float(stats.ttest_rel(a, b).pvalue)
        w_p = float(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)
    return PairedTest(
        model=model_runs[0].model,
        baseline=baseline_runs[0].model,
        metric=metric,
        num_users=len(a),
        model_mean=float(a.mean()),
        baseline_mean=float(b.mean()),
        t_pvalue=t_p,
        wilcoxon_pvalue=w_p,
    )


def run_compare(
    dataset: SplitDataset,
    models: Sequence[str],
    seeds: Sequence[int],
    out_dir: str | Path,
    *,
    dataset_dir: Path | None = None,
    dataset_name: str = "dataset",
    ks: Sequence[int] = DEFAULT_KS,
    configs: dict[str, dict[str, Any]] | None = None,
    device: str = "auto",
    num_negatives: int | None = None,
    progress: bool = False,
    reuse: bool = True,
    log: Any = print,
) -> Comparison:
    """Train every model with every seed, evaluate on test, keep per-user results on disk.

    ``configs`` maps a model name to its options; models without an entry use their packaged
    ``configs/<name>.yaml``. With ``num_negatives`` the evaluation is sampled (and says so).
    With ``reuse``, a run already finished in ``out_dir`` with the same config, data and
    protocol is read back instead of trained again: an interrupted compare picks up where it
    stopped, and seeds run by separate commands into one ``out_dir`` combine into one table.
    """
    out_dir = Path(out_dir)
    specs = [get_model(name) for name in models]  # unknown names fail before any training
    dev = str(resolve_device(device))
    stats = _dataset_stats(dataset)
    manifest = _manifest_digest(dataset_dir)
    _refuse_other_dataset(out_dir, manifest)
    runs: list[ModelRun] = []
    for spec in specs:
        config = (configs or {}).get(spec.name, default_config(spec.name))
        for seed in seeds:
            run_dir = out_dir / "runs" / spec.name / f"seed{seed}"
            settings = _normalised(
                {
                    "config": spec.resolved(config),
                    "dataset": dataset_name,
                    "dataset_stats": stats,
                    "dataset_manifest": manifest,
                    "ks": sorted(set(ks)),
                    "num_negatives": num_negatives,
                }
            )
            finished = _finished_run(run_dir, spec.name, seed, settings) if reuse else None
            if finished is not None:
                log(
                    f"reusing {spec.name} (seed {seed}): finished with the same settings in "
                    f"{run_dir}; {PRIMARY_METRIC} = {finished.result.metrics[PRIMARY_METRIC]:.4f}"
                )
                runs.append(finished)
                continue
            log(f"training {spec.name} (seed {seed}) ...")
            trained = spec.train(
                TrainRequest(
                    dataset=dataset,
                    dataset_dir=dataset_dir,
                    seed=seed,
                    run_dir=run_dir,
                    config=config,
                    device=dev,
                    progress=progress,
                )
            )
            result = evaluate(
                trained.scorer,
                dataset,
                split="test",
                ks=ks,
                device=dev,
                num_negatives=num_negatives,
            )
            result.save(run_dir / "eval_test")
            geometry = None
            if isinstance(trained.scorer, EmbeddingModel):
                geometry = model_geometry(
                    trained.scorer,
                    (dataset.test.users, dataset.test.items),
                    int(dataset.num_items),
                    seed=seed,
                )
            log(
                f"  {spec.name} seed {seed}: {PRIMARY_METRIC} = "
                f"{result.metrics[PRIMARY_METRIC]:.4f} ({result.label}); "
                f"train {trained.train_seconds:.1f}s, eval {result.seconds:.1f}s"
            )
            run = ModelRun(
                model=spec.name,
                seed=seed,
                result=result,
                history=trained.history,
                train_seconds=trained.train_seconds,
                geometry=geometry,
                run_dir=run_dir,
            )
            _mark_finished(run, settings)
            runs.append(run)
    return Comparison(
        dataset=dataset_name,
        runs=runs,
        seeds=list(seeds),
        ks=tuple(sorted(set(ks))),
        device=dev,
        dataset_stats=stats,
    )


def _dataset_stats(dataset: SplitDataset) -> dict[str, int]:
    return {
        "users": dataset.num_users,
        "items": dataset.num_items,
        "train": len(dataset.train.users),
        "valid": len(dataset.valid.users),
        "test": len(dataset.test.users),
    }


def _manifest_digest(dataset_dir: Path | None) -> str | None:
    """A digest of a prepared dataset's manifest (the checksums of its splits and graph), so a
    run is only reused on the very data it was trained on, not on another split of equal size."""
    from galrec.data.prepared import MANIFEST

    if dataset_dir is None or not (dataset_dir / MANIFEST).is_file():
        return None
    return hashlib.sha256((dataset_dir / MANIFEST).read_bytes()).hexdigest()


def _refuse_other_dataset(out_dir: Path, manifest: str | None) -> None:
    """Raise ``ValueError`` if a run finished in ``out_dir`` was trained on another prepared
    dataset (another manifest): two datasets sharing a name must not mix in one report."""
    if manifest is None:
        return
    for path in sorted(out_dir.glob(f"runs/*/*/{FINISHED_FILE}")):
        try:
            other = json.loads(path.read_text())["settings"]["dataset_manifest"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable records are never reused either
        if other is not None and other != manifest:
            raise ValueError(
                f"{out_dir}: holds results of another dataset ({path.parent} was trained on a "
                "different manifest); pass another --out or remove the directory"
            )


def _normalised(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), for comparing settings."""
    return json.loads(json.dumps(value, sort_keys=True))


def _mark_finished(run: ModelRun, settings: Any) -> None:
    """Record a finished run next to its test evaluation, atomically (temp file + rename)."""
    assert run.run_dir is not None
    record = {
        "model": run.model,
        "seed": run.seed,
        "settings": settings,
        "train_seconds": run.train_seconds,
        "history": run.history,
        "geometry": dataclasses.asdict(run.geometry) if run.geometry else None,
    }
    path = run.run_dir / FINISHED_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(temporary, path)


def _finished_run(run_dir: Path, model: str, seed: int, settings: Any) -> ModelRun | None:
    """The run finished in ``run_dir`` with exactly these settings, or None."""
    path = run_dir / FINISHED_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if (record.get("model"), record.get("seed"), record.get("settings")) != (
        model,
        seed,
        settings,
    ):
        return None
    geometry = record.get("geometry")
    return ModelRun(
        model=model,
        seed=seed,
        result=EvalResult.load(run_dir / "eval_test"),
        history=record["history"],
        train_seconds=record["train_seconds"],
        geometry=AlignmentUniformity(**geometry) if geometry else None,
        run_dir=run_dir,
    )
