"""plots: every figure of a comparison is written as a PNG file."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from galrec.evaluation.alignment import AlignmentUniformity, alignment, uniformity
from galrec.evaluation.evaluate import EvalResult
from galrec.experiments.compare import Comparison, ModelRun
from galrec.experiments.plots import write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(model: str, seed: int, score: float, with_history: bool) -> ModelRun:
    per_user = {
        f"{m}@{k}": np.full(4, score) for m in ("recall", "ndcg", "hr", "mrr") for k in (5, 10, 20)
    }
    history = (
        [{"epoch": e, "loss": 1.0 / e, "valid_ndcg@10": score * e / 3} for e in (1, 2, 3)]
        if with_history
        else []
    )
    return ModelRun(
        model=model,
        seed=seed,
        result=EvalResult("full", "test", (5, 10, 20), np.arange(4), per_user, num_items=9),
        history=history,
        train_seconds=0.1,
        geometry=AlignmentUniformity(0.5 + score, -2.0 - score, -3.0) if with_history else None,
    )


def test_all_plots_are_written(tmp_path) -> None:
    comparison = Comparison(
        dataset="tiny",
        runs=[run("mf", 0, 0.2, True), run("mf", 1, 0.3, True), run("popularity", 0, 0.1, False)],
        seeds=[0, 1],
    )
    written = write_plots(comparison, tmp_path)
    assert [p.name for p in written] == [
        "training_curves.png",
        "ndcg_at_10.png",
        "alignment_uniformity.png",
    ]
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_epochs_and_steps_are_told_apart(tmp_path, monkeypatch) -> None:
    import galrec.experiments.plots

    lm = run("gal_rec", 0, 0.3, False)
    lm.history = [{"step": s, "loss": 5.0 - s / 100, "valid_ndcg@10": 0.1} for s in (100, 200)]
    comparison = Comparison(dataset="tiny", runs=[run("mf", 0, 0.2, True), lm], seeds=[0])
    closed = []
    monkeypatch.setattr(galrec.experiments.plots.plt, "close", closed.append)
    assert (
        galrec.experiments.plots.plot_training_curves(comparison, tmp_path / "curves.png")
        is not None
    )
    loss_ax, valid_ax = closed[0].axes
    for ax in (loss_ax, valid_ax):
        assert ax.get_xlabel() == "epoch or step (per model, see legend)"
        labels = [text.get_text() for text in ax.get_legend().get_texts()]
        assert labels == ["mf (epochs)", "gal_rec (steps)"]


def test_plots_without_histories_or_embeddings_are_skipped(tmp_path) -> None:
    comparison = Comparison(dataset="tiny", runs=[run("popularity", 0, 0.1, False)], seeds=[0])
    assert [p.name for p in write_plots(comparison, tmp_path)] == ["ndcg_at_10.png"]
    assert not (tmp_path / "training_curves.png").exists()


def test_alignment_and_uniformity_values() -> None:
    import torch

    same = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert alignment(same, same) == pytest.approx(0.0)
    # Opposite unit vectors are 2 apart: squared distance 4.
    assert alignment(torch.tensor([[1.0, 0.0]]), torch.tensor([[-3.0, 0.0]])) == pytest.approx(4.0)
    # Two antipodal points: log exp(-2 * 4) = -8; a collapsed set: log 1 = 0.
    assert uniformity(torch.tensor([[0.0, 1.0], [0.0, -1.0]])) == pytest.approx(-8.0)
    assert uniformity(torch.ones(5, 3)) == pytest.approx(0.0, abs=1e-6)
