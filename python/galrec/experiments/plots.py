"""PNG plots of a comparison: training curves, NDCG@10 per model, alignment vs uniformity.

Needs matplotlib (the ``plots`` extra); imported only when plots are written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
import numpy as np

if TYPE_CHECKING:
    from galrec.experiments.compare import Comparison


def _save(fig: plt.Figure, path: Path) -> Path:
    """Lay out, write and close a figure; every plot here is saved the same way."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_training_curves(comparison: Comparison, path: Path) -> Path | None:
    """Training loss and validation metric against epoch/step, first seed of each model."""
    fig, (loss_ax, valid_ax) = plt.subplots(1, 2, figsize=(11, 4))
    drawn = False
    units: set[str] = set()  # ID models train in epochs, language models in steps
    for model in comparison.models:
        history = comparison.runs_of(model)[0].history
        if not history:
            continue
        x_key = "epoch" if "epoch" in history[0] else "step"
        label = f"{model} ({x_key}s)"
        xs = [record[x_key] for record in history if "loss" in record]
        losses = [record["loss"] for record in history if "loss" in record]
        if xs:
            loss_ax.plot(xs, losses, label=label)
            units.add(x_key)
            drawn = True
        valid_key = next((k for r in history for k in r if k.startswith("valid_")), None)
        points = [(r[x_key], r[valid_key]) for r in history if valid_key and valid_key in r]
        if points and valid_key:
            valid_ax.plot(*zip(*points, strict=True), marker="o", label=label)
            units.add(x_key)
            valid_ax.set_ylabel(valid_key.replace("valid_", "validation "))
    if not drawn:
        plt.close(fig)
        return None
    x_label = " or ".join(sorted(units)) + (" (per model, see legend)" if len(units) > 1 else "")
    loss_ax.set_title("training loss")
    loss_ax.set_yscale("log")
    valid_ax.set_title("validation metric (full ranking)")
    for ax in (loss_ax, valid_ax):
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_metric(comparison: Comparison, path: Path, metric: str = "ndcg@10") -> Path:
    """A bar per model: mean over seeds, error bar one std."""
    summary = comparison.summary()
    models = comparison.models
    means = [summary[m][metric][0] for m in models]
    stds = [summary[m][metric][1] for m in models]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(models)), 4))
    ax.bar(np.arange(len(models)), means, yerr=stds, capsize=4, color="tab:blue")
    ax.set_xticks(np.arange(len(models)), models, rotation=30, ha="right")
    label = metric.upper().replace("NDCG", "NDCG").replace("RECALL", "Recall")
    sampled = " (sampled)" if comparison.mode == "sampled" else ""
    ax.set_ylabel(f"{label}{sampled}")
    ax.set_title(f"{comparison.dataset}: test {label}{sampled}, seeds {comparison.seeds}")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_alignment_uniformity(comparison: Comparison, path: Path) -> Path | None:
    """Alignment (x) against uniformity (y) per model and seed; lower-left is better."""
    fig, ax = plt.subplots(figsize=(5, 4))
    drawn = False
    for model in comparison.models:
        points = [run.geometry for run in comparison.runs_of(model) if run.geometry is not None]
        if points:
            ax.scatter([p.alignment for p in points], [p.uniformity for p in points], label=model)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("alignment (test pairs)")
    ax.set_ylabel("uniformity (users and items)")
    ax.set_title("representation geometry (Wang & Isola)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def write_plots(comparison: Comparison, out_dir: Path) -> list[Path]:
    """Every plot that has data, as PNG files in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [
        plot_training_curves(comparison, out_dir / "training_curves.png"),
        plot_metric(comparison, out_dir / "ndcg_at_10.png"),
        plot_alignment_uniformity(comparison, out_dir / "alignment_uniformity.png"),
    ]
    return [path for path in written if path is not None]
